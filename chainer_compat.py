"""Lets chainer 7.8.1 import on Python 3.12; importing this module is all.

At import time chainer runs ``import numpy.distutils.system_info``
(chainer/_environment_check.py), only to look at the BLAS of macOS;
numpy 1.26 has no ``numpy.distutils`` on Python 3.12. On 3.12 and later this
module puts a stand-in whose ``get_info`` finds nothing into
``sys.modules`` (it imports nothing itself, numpy included).

It also loads pip's cuDNN 8 where ``make setup GPU=cuda12x`` installed it
(:func:`preload_cudnn`). It must run before the first ``import chainer``.
``python chainer_compat.py`` (run by ``make setup``) installs a start-up
hook in the interpreter's site-packages that imports it whenever that
interpreter starts, so scripts, tests and a user's own ``import chainer``
work in the venv; the project's packages also import it first, for
interpreters without the hook.
"""
import os
import sys
import sysconfig
import types


def _stand_in():
    system_info = types.ModuleType('numpy.distutils.system_info')
    system_info.get_info = lambda name, notfound_action=0: {}
    distutils = types.ModuleType('numpy.distutils')
    distutils.__path__ = []
    distutils.system_info = system_info
    return distutils, system_info


if sys.version_info >= (3, 12) and 'numpy.distutils' not in sys.modules:
    sys.modules['numpy.distutils'], \
        sys.modules['numpy.distutils.system_info'] = _stand_in()


def preload_cudnn(site=None):
    """Load the cuDNN 8 of pip's ``nvidia-cudnn-cu12`` (``make setup
    GPU=cuda12x``) when it is installed, so that CuPy 13, whose cuDNN
    module links ``libcudnn.so.8``, finds it without LD_LIBRARY_PATH.
    Returns the path loaded, or None (not installed, or not loadable: then
    chainer runs without cuDNN, as before)."""
    site = site or sysconfig.get_paths()['purelib']
    path = os.path.join(site, 'nvidia', 'cudnn', 'lib', 'libcudnn.so.8')
    if not os.path.exists(path):
        return None
    import ctypes
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return None
    return path


preload_cudnn()


def install_hook():
    """``chainer_compat.pth`` and a link to this file in the running
    interpreter's site-packages."""
    site = sysconfig.get_paths()['purelib']
    link = os.path.join(site, 'chainer_compat.py')
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(os.path.abspath(__file__), link)
    with open(os.path.join(site, 'chainer_compat.pth'), 'w') as f:
        f.write('import chainer_compat\n')


if __name__ == '__main__':
    install_hook()
