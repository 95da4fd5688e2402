"""GAIN's soft mask and erasure (Li et al., CVPR 2018, eq. 2-3)."""
import chainer.functions as F


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
