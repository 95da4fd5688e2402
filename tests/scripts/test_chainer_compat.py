"""chainer_compat.py: the cuDNN preload of the start-up hook."""
import os
import shutil

import pytest


def test_cudnn_preload_loads_pips_library_and_never_breaks_import(tmp_path):
    """chainer_compat loads nvidia/cudnn/lib/libcudnn.so.8 when it is there
    (a real shared library stands in for it here); without it, or with an
    unloadable file, the import goes on without cuDNN."""
    import ctypes.util
    import chainer_compat
    assert chainer_compat.preload_cudnn(str(tmp_path)) is None
    lib = tmp_path / 'nvidia' / 'cudnn' / 'lib'
    lib.mkdir(parents=True)
    (lib / 'libcudnn.so.8').write_bytes(b'not a library')
    assert chainer_compat.preload_cudnn(str(tmp_path)) is None
    found = ctypes.util.find_library('z') or ctypes.util.find_library('m')
    real = next((os.path.join(d, found) for d in ('/lib/x86_64-linux-gnu',
                 '/usr/lib/x86_64-linux-gnu', '/lib64', '/usr/lib64')
                 if found and os.path.exists(os.path.join(d, found))), None)
    if real is None:
        pytest.skip('no shared library to stand in for cuDNN')
    shutil.copy(real, str(lib / 'libcudnn.so.8'))
    assert chainer_compat.preload_cudnn(str(tmp_path)) == str(
        lib / 'libcudnn.so.8')
