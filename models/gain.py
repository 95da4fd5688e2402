"""GAIN's soft mask and erasure (Li et al., CVPR 2018, eq. 2-3), and which
CAMs are erased."""
import chainer
import chainer.functions as F


def erased_cams(labels, am_mode, dtype):
    """The CAMs GAIN erases for multi-hot ``labels`` ``(N, K)`` (numpy or
    cupy): one per (image, ground-truth class) in ``'per-class'`` mode, one
    per image for its classes together in ``'joint'`` mode; images without
    a class have none.

    Returns:
        ``(rows, targets)``: the image of each CAM ``(M,)`` and its
        multi-hot Grad-CAM target ``(M, K)`` in ``dtype``.
    """
    xp = chainer.backend.get_array_module(labels)
    hot = labels.astype(bool)
    if am_mode == 'per-class':
        rows, cls = xp.nonzero(hot)
        targets = xp.zeros((len(rows), hot.shape[1]), dtype)
        targets[xp.arange(len(rows)), cls] = 1
    else:
        rows = xp.nonzero(hot.any(axis=1))[0]
        targets = hot[rows].astype(dtype)
    return rows, targets


def soft_mask(cam_norm, sigma=0.5, omega=10.0):
    """``T(A) = sigmoid(omega * (A - sigma))`` of normalised maps
    ``(N, H, W)``: ~1 where the network looks, ~0 elsewhere."""
    return F.sigmoid(omega * (cam_norm - sigma))


def erase(x, mask):
    """``I* = I - T * I`` for images ``(N, 3, H, W)`` and masks ``(N, H, W)``.

    On caffe-preprocessed input an erased pixel becomes 0, the mean colour.
    """
    mask = F.broadcast_to(F.expand_dims(mask, 1), x.shape)
    return x - mask * x
