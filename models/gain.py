"""GAIN's soft mask and erasure (Li et al., CVPR 2018, eq. 2-3), and which
CAMs are erased."""
import chainer
from chainer import utils
from chainer.backends import cuda


def erased_cams(labels, am_mode, dtype):
    """``(rows, targets)``: the image ``(M,)`` and multi-hot Grad-CAM target
    ``(M, K)`` of each CAM GAIN erases for ``labels`` ``(N, K)``: one per
    (image, class) in ``'per-class'`` mode, one per image with a class in
    ``'joint'`` mode."""
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
    """GAIN's erasure ``I* = I - T(A) I`` of images ``x`` ``(N, C, H, W)``
    by the :func:`soft_mask` of ``cam_norm`` ``(N, H, W)``, as one
    function (on a GPU one kernel forward and three backward instead of
    about ten); differentiable once. An erased pixel becomes 0, the mean
    colour."""
    return SoftErase(sigma, omega).apply((x, cam_norm))[0]


# The arithmetic of soft_mask, in its order, for the GPU kernels.
_MASK = 'T m = tanh((a - sigma) * omega * (T)0.5) * (T)0.5 + (T)0.5;'


def soft_mask(cam_norm, sigma=0.5, omega=10.0):
    """``T(A) = sigmoid(omega (A - sigma))`` of normalised maps ``(N, H,
    W)`` (an array): ~1 where the network looks."""
    xp = chainer.backend.get_array_module(cam_norm)
    t = cam_norm.dtype.type
    return (xp.tanh((cam_norm - t(sigma)) * t(omega) * t(0.5)) * t(0.5) +
            t(0.5))


class SoftErase(chainer.FunctionNode):
    """``y = x - m x``, ``m = sigmoid(omega (a - sigma))`` over the
    channels."""

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
    """The gradients of :class:`SoftErase` w.r.t. ``x`` and ``a``."""

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
