"""Images of different sizes in one batch (``datasets.pad_examples``):
each at the top left of the batch's ``(H, W)``, the rest 0 (label -1);
``sizes`` ``(N, 2)`` (numpy, on the host) holds each image's own size.

The network must not see the padding: each layer's output is zeroed
beyond the cells the image alone would give (its *valid* size), so a
convolution at an image's border reads zeros as it reads its own zero
padding; a max pooling reads 0 where the image alone has -inf padding,
which changes nothing after a ReLU.
"""
import chainer.functions as F
import numpy as np


def pooled(valid):
    """Valid sizes after a 2x2 max pooling (``cover_all``: ceil)."""
    return -(-valid // 2)


def cell_mask(valid, shape, xp, dtype):
    """``(N, 1, H, W)``: 1 inside each image's ``valid`` ``(N, 2)`` cells of
    ``shape`` ``(H, W)``, 0 beyond."""
    valid = xp.asarray(valid)
    rows = xp.arange(shape[0])[None, :] < valid[:, :1]
    cols = xp.arange(shape[1])[None, :] < valid[:, 1:]
    return (rows[:, :, None] & cols[:, None, :]).astype(dtype)[:, None]


def inside(h, valid):
    """``h`` ``(N, C, H, W)`` zeroed beyond ``valid`` (None: ``h``)."""
    if valid is None:
        return h
    mask = cell_mask(valid, h.shape[2:], h.xp, h.dtype)
    return h * h.xp.broadcast_to(mask, h.shape)


def masked_mean(h, valid):
    """``(N, C)``: the mean of ``h`` ``(N, C, H, W)`` over each image's
    ``valid`` cells (the others take no gradient)."""
    xp = h.xp
    total = F.sum(inside(h, valid), axis=(2, 3))
    cells = xp.asarray(np.prod(valid, axis=1, dtype=np.int64)).astype(h.dtype)
    return total / xp.broadcast_to(cells[:, None], total.shape)
