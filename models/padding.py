"""Images of different sizes in one batch.

A padded batch (``datasets.pad_examples``) holds each image at the top
left of the batch's ``(H, W)``; the rest is 0 (the mean colour after
preprocessing) and its label map -1. ``sizes`` ``(N, 2)`` (a numpy int
array, on the host) gives each image's own ``(height, width)``.

The network must not see the padding: every layer's output is kept to the
cells that the same image alone, unpadded, would give (its *valid* size,
from the same shape arithmetic as the layers), and zeroed beyond them, so
that a convolution near an image's border reads zeros there as it reads
its zero padding alone; a max pooling reads 0 where the image alone has
its -inf padding, which changes nothing after a ReLU. Without ``sizes``
(a batch of one size) nothing here runs.
"""
import chainer.functions as F
import numpy as np


def pooled(valid):
    """Valid sizes after a 2x2 max pooling of stride 2 (chainer's
    ``cover_all``: a last, half-covered window for an odd side)."""
    return -(-valid // 2)


def cell_mask(valid, shape, xp, dtype):
    """``(N, 1, H, W)`` of 1 inside each image's ``valid`` ``(N, 2)`` cells
    of maps of ``shape`` ``(H, W)``, 0 beyond."""
    valid = xp.asarray(valid)
    rows = xp.arange(shape[0])[None, :] < valid[:, :1]
    cols = xp.arange(shape[1])[None, :] < valid[:, 1:]
    return (rows[:, :, None] & cols[:, None, :]).astype(dtype)[:, None]


def inside(h, valid):
    """``h`` ``(N, C, H, W)`` with the cells beyond each image's ``valid``
    ``(N, 2)`` zeroed (``h`` itself when ``valid`` is None)."""
    if valid is None:
        return h
    mask = cell_mask(valid, h.shape[2:], h.xp, h.dtype)
    return h * h.xp.broadcast_to(mask, h.shape)


def masked_mean(h, valid):
    """``(N, C)``: the mean of ``h`` ``(N, C, H, W)`` over each image's
    ``valid`` ``(N, 2)`` cells; the cells beyond take no gradient."""
    xp = h.xp
    total = F.sum(inside(h, valid), axis=(2, 3))
    cells = xp.asarray(np.prod(valid, axis=1, dtype=np.int64)).astype(
        h.dtype)
    return total / xp.broadcast_to(cells[:, None], total.shape)
