"""Lets chainer 7.8.1 import on Python 3.12; importing this module is all.

At import time chainer runs ``import numpy.distutils.system_info``
(chainer/_environment_check.py) to look at macOS's BLAS; numpy 1.26 has
no ``numpy.distutils`` on 3.12, so this module puts a stand-in whose
``get_info`` finds nothing into ``sys.modules``. It also loads pip's
cuDNN 8 (:func:`preload_cudnn`), and must run before the first ``import
chainer``: ``python chainer_compat.py`` (``make setup``) installs a hook in
site-packages that imports it at every interpreter start; the project's
packages also import it first, for interpreters without the hook.
"""
import os
import sys
import sysconfig
import types


if sys.version_info >= (3, 12) and 'numpy.distutils' not in sys.modules:
    _info = types.ModuleType('numpy.distutils.system_info')
    _info.get_info = lambda name, notfound_action=0: {}
    _distutils = types.ModuleType('numpy.distutils')
    _distutils.__path__ = []
    _distutils.system_info = _info
    sys.modules['numpy.distutils'] = _distutils
    sys.modules['numpy.distutils.system_info'] = _info


def preload_cudnn(site=None):
    """Load pip's ``nvidia-cudnn-cu12`` (``make setup GPU=cuda12x``) where
    installed, so that CuPy 13 finds ``libcudnn.so.8`` without
    LD_LIBRARY_PATH. The path loaded, or None (then no cuDNN)."""
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
