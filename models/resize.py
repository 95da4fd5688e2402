"""Bilinear resizing as two matrix products (``F.resize_images`` is broken
on NumPy >= 1.24): differentiable to any order, batched, on CPU and GPU."""
import functools

import chainer
import chainer.functions as F
import numpy as np


@functools.lru_cache(maxsize=64)
def interpolation_matrix(n_out, n_in, stride=None):
    """``(n_out, n_in)`` float32 half-pixel bilinear weights: output pixel
    ``i`` samples the input at ``(i + 0.5) / stride - 0.5``, clamped (PIL,
    OpenCV, ``align_corners=False``); ``stride``, output pixels per input
    cell, defaults to ``n_out / n_in``."""
    stride = n_out / n_in if stride is None else stride
    m = np.zeros((n_out, n_in), dtype=np.float32)
    src = np.clip((np.arange(n_out) + 0.5) / stride - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (src - lo).astype(np.float32)
    rows = np.arange(n_out)
    np.add.at(m, (rows, lo), 1 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def resize_bilinear(x, size, stride=None):
    """Maps ``(N, h, w)`` resized to ``size`` ``(H, W)``; ``stride``: output
    pixels per cell (None: stretched over ``(H, W)``; 16: a conv5_3 cell
    ``(i, j)`` lands on pixel ``(16 i + 7.5, 16 j + 7.5)``)."""
    n, h, w = x.shape
    H, W = size
    array = x.array if isinstance(x, chainer.Variable) else x
    device = chainer.backend.get_device_from_array(array)
    mh, mw = (_on_device(device, array.dtype, n_out, n_in, stride)
              for n_out, n_in in ((H, h), (W, w)))
    y = F.matmul(F.reshape(x, (n * h, w)), mw, transb=True)        # (N h, W)
    y = F.transpose(F.reshape(y, (n, h, W)), (0, 2, 1))            # (N, W, h)
    y = F.matmul(F.reshape(y, (n * W, h)), mh, transb=True)        # (N W, H)
    return F.transpose(F.reshape(y, (n, W, H)), (0, 2, 1))


_DEVICE_MATRICES = {}


def _on_device(device, dtype, n_out, n_in, stride):
    """:func:`interpolation_matrix` on ``device``, sent there once."""
    key = (str(device), np.dtype(dtype).str, n_out, n_in, stride)
    if key not in _DEVICE_MATRICES:
        m = interpolation_matrix(n_out, n_in, stride).astype(dtype)
        _DEVICE_MATRICES[key] = device.send(m)
    return _DEVICE_MATRICES[key]


def upsample_each(x, sizes, size, stride):
    """:func:`resize_bilinear` by ``stride`` of a padded batch's maps
    (:mod:`models.padding`): map ``i``'s first ``ceil(sizes[i] / stride)``
    cells onto its image's pixels as for the image alone; 0 beyond."""
    n, h, w = x.shape
    array = x.array if isinstance(x, chainer.Variable) else x
    device = chainer.backend.get_device_from_array(array)
    mh, mw = (device.send(np.stack([
        _padded_matrix(n_out, int(side), stride, n_in)
        for side in np.asarray(sizes)[:, axis]]).astype(array.dtype))
        for axis, n_out, n_in in ((0, size[0], h), (1, size[1], w)))
    y = F.matmul(x, mw, transb=True)                                # (N, h, W)
    return F.matmul(mh, y)                                          # (N, H, W)


@functools.lru_cache(maxsize=256)
def _padded_matrix(n_out, side, stride, n_in):
    """``(n_out, n_in)``: a ``side``-pixel image's matrix at the top left,
    zeros elsewhere."""
    m = np.zeros((n_out, n_in), np.float32)
    cells = -(-side // stride)
    m[:side, :cells] = interpolation_matrix(side, cells, stride)
    return m
