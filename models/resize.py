"""Bilinear resizing as two matrix products.

``F.resize_images`` is broken on NumPy >= 1.24 (it uses ``numpy.float``).
Fixed interpolation matrices keep the operation differentiable to any order
and batched on CPU and GPU.
"""
import functools

import chainer
import chainer.functions as F
import numpy as np


@functools.lru_cache(maxsize=64)
def interpolation_matrix(n_out, n_in):
    """``(n_out, n_in)`` float32 matrix of half-pixel bilinear weights
    (the convention of PIL, OpenCV and ``align_corners=False``)."""
    m = np.zeros((n_out, n_in), dtype=np.float32)
    src = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    src = np.clip(src, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (src - lo).astype(np.float32)
    rows = np.arange(n_out)
    np.add.at(m, (rows, lo), 1 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def resize_bilinear(x, size):
    """Bilinear resize of maps ``(N, h, w)`` to ``(N, H, W)``.

    Args:
        x: ``(N, h, w)`` Variable or array.
        size: ``(H, W)``.
    """
    n, h, w = x.shape
    H, W = size
    device = chainer.backend.get_device_from_array(
        x.array if isinstance(x, chainer.Variable) else x)
    mh, mw = (_on_device(device, *shape) for shape in ((H, h), (W, w)))
    y = F.matmul(F.reshape(x, (n * h, w)), mw, transb=True)        # (N h, W)
    y = F.transpose(F.reshape(y, (n, h, W)), (0, 2, 1))            # (N, W, h)
    y = F.matmul(F.reshape(y, (n * W, h)), mh, transb=True)        # (N W, H)
    return F.transpose(F.reshape(y, (n, W, H)), (0, 2, 1))


_DEVICE_MATRICES = {}


def _on_device(device, n_out, n_in):
    """:func:`interpolation_matrix` on ``device``, sent there once."""
    if device.xp is np:
        return interpolation_matrix(n_out, n_in)
    key = (str(device), n_out, n_in)
    if key not in _DEVICE_MATRICES:
        _DEVICE_MATRICES[key] = device.send(interpolation_matrix(n_out, n_in))
    return _DEVICE_MATRICES[key]
