"""GAIN's soft mask and erasure (Li et al., CVPR 2018, eq. 2-3), and which
CAMs are erased."""
import chainer
from chainer import utils
from chainer.backends import cuda


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


def soft_erase(x, cam_norm, sigma=0.5, omega=10.0):
    """GAIN's erasure ``I* = I - T(A) I`` with the soft mask
    ``T(A) = sigmoid(omega (A - sigma))`` (:func:`soft_mask`) broadcast over
    the channels, as one function: one kernel forward and three backward
    on a GPU instead of about ten (and none of the mask's intermediate
    arrays kept for the backward). On caffe-preprocessed input an erased
    pixel becomes 0, the mean colour.

    Args:
        x: ``(N, C, H, W)`` images.
        cam_norm: ``(N, H, W)`` normalised maps.
    Returns:
        ``(N, C, H, W)`` Variable, the erased images. Differentiable once
        (the backward itself is not).
    """
    return SoftErase(sigma, omega).apply((x, cam_norm))[0]


# The arithmetic of soft_mask, in its order, for the GPU kernels.
_MASK = 'T m = tanh((a - sigma) * omega * (T)0.5) * (T)0.5 + (T)0.5;'


def soft_mask(cam_norm, sigma=0.5, omega=10.0):
    """``T(A) = sigmoid(omega (A - sigma))`` of normalised maps ``(N, H, W)``
    (a numpy or cupy array): ~1 where the network looks, ~0 elsewhere; the
    mask :func:`soft_erase` applies (the pictures show it)."""
    xp = chainer.backend.get_array_module(cam_norm)
    t = cam_norm.dtype.type
    return (xp.tanh((cam_norm - t(sigma)) * t(omega) * t(0.5)) * t(0.5) +
            t(0.5))


class SoftErase(chainer.FunctionNode):
    """``y = x - m x`` with ``m = sigmoid(omega (a - sigma))`` broadcast
    over the channels of ``x``; see :func:`soft_erase`."""

    def __init__(self, sigma, omega):
        self.sigma, self.omega = float(sigma), float(omega)

    def forward_cpu(self, inputs):
        self.retain_inputs((0, 1))
        x, a = inputs
        m = soft_mask(a, self.sigma, self.omega)[:, None]
        return utils.force_array(x - m * x),

    def forward_gpu(self, inputs):
        self.retain_inputs((0, 1))
        x, a = inputs
        y = cuda.elementwise(
            'T x, T a, T sigma, T omega', 'T y', _MASK + 'y = x - m * x;',
            'gain_soft_erase')(x, a[:, None], self.sigma, self.omega)
        return y,

    def backward(self, indexes, grad_outputs):
        x, a = self.get_retained_inputs()
        return SoftEraseGrad(self.sigma, self.omega).apply(
            (x.array, a.array, grad_outputs[0]))


class SoftEraseGrad(chainer.FunctionNode):
    """Gradients of :class:`SoftErase` w.r.t. ``x`` and ``a`` (not itself
    differentiable)."""

    def __init__(self, sigma, omega):
        self.sigma, self.omega = float(sigma), float(omega)

    def forward_cpu(self, inputs):
        x, a, gy = inputs
        t = a.dtype.type
        m = soft_mask(a, self.sigma, self.omega)
        gx = gy + -gy * m[:, None]
        gm = (-gy * x).sum(axis=1)
        return gx, utils.force_array(gm * m * (t(1) - m) * t(self.omega))

    def forward_gpu(self, inputs):
        x, a, gy = inputs
        gx, gmx = cuda.elementwise(
            'T gy, T x, T a, T sigma, T omega', 'T gx, T gmx',
            _MASK + 'gx = gy + -gy * m; gmx = -gy * x;',
            'gain_soft_erase_bwd')(gy, x, a[:, None], self.sigma, self.omega)
        ga = cuda.elementwise(
            'T gm, T a, T sigma, T omega', 'T ga',
            _MASK + 'ga = gm * m * ((T)1 - m) * omega;',
            'gain_soft_erase_bwd_mask')(gmx.sum(axis=1), a, self.sigma,
                                        self.omega)
        return gx, ga

    def backward(self, indexes, grad_outputs):
        # chainer's default would return None: a silent zero
        raise NotImplementedError('soft_erase is differentiable once')
