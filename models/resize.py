"""Bilinear resizing as two matrix products.

``F.resize_images`` is broken on NumPy >= 1.24 (it uses ``numpy.float``).
Fixed interpolation matrices keep the operation differentiable to any order
and batched on CPU and GPU.
"""
import functools

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
    xp = _xp(x)
    mh = xp.asarray(interpolation_matrix(H, h))
    mw = xp.asarray(interpolation_matrix(W, w))
    y = F.matmul(F.reshape(x, (n * h, w)), mw, transb=True)        # (N h, W)
    y = F.transpose(F.reshape(y, (n, h, W)), (0, 2, 1))            # (N, W, h)
    y = F.matmul(F.reshape(y, (n * W, h)), mh, transb=True)        # (N W, H)
    return F.transpose(F.reshape(y, (n, W, H)), (0, 2, 1))


def _xp(x):
    import chainer
    return chainer.backend.get_array_module(x)
