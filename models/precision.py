"""Mixed precision of a forward pass: the parameters stay float32 (the
copy the optimizer updates, snapshots and model files hold), the layers
compute in float16.

Each layer casts its input and its weights to float16 with ``F.cast``, a
differentiable cast, so the weights' gradients come back in float32.
Chainer's own ``mixed16`` dtype instead stores float16 parameters with
float32 copies inside the update rules, which chainer's serializers do not
save: a snapshot would lose the master weights, and a frozen head would be
rounded to float16 in ``model.npz``.

``'mixed16-emulated'`` rounds the same values (each layer's input, weights
and output, and their gradients) to float16 but keeps them, and computes,
in float32: the numerics of float16 storage with float32 accumulation
(what a GPU's float16 matrix product does) at float32 speed on a CPU,
where numpy has no fast float16 matrix product.
"""
import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np

#: The precisions a model computes in.
PRECISIONS = ('float32', 'mixed16', 'mixed16-emulated')


def cast(x, dtype):
    """``x`` (Variable or array) in ``dtype``; ``x`` itself if it is
    already."""
    return x if x.dtype == dtype else F.cast(x, dtype)


class RoundToHalf(chainer.FunctionNode):
    """Rounds values to the nearest float16 (inf beyond its range) and
    keeps their dtype; its gradient is rounded the same way."""

    def forward(self, inputs):
        x, = inputs
        with np.errstate(over='ignore'):      # inf is float16's answer
            return x.astype(np.float16).astype(x.dtype),

    def backward(self, indexes, grad_outputs):
        return RoundToHalf().apply(grad_outputs)


def to_compute(x, precision):
    """``x`` as a layer of a model in ``precision`` reads it."""
    if precision == 'mixed16':
        return cast(x, np.float16)
    if precision == 'mixed16-emulated':
        return RoundToHalf().apply((x,))[0]
    return x


def apply_link(link, x, precision='float32', pad=None):
    """``link(x)`` computed in ``precision``; ``pad`` overrides a
    convolution's padding.

    Args:
        link: ``L.Convolution2D``, ``L.Deconvolution2D`` or ``L.Linear``.
        x: the input Variable, ``(N, C, H, W)`` or ``(N, C)``.
    """
    if precision == 'float32' and pad is None:
        return link(x)
    x = to_compute(x, precision)
    W = to_compute(link.W, precision)
    b = None if link.b is None else to_compute(link.b, precision)
    if isinstance(link, L.Deconvolution2D):
        y = F.deconvolution_2d(x, W, b, link.stride, link.pad, link.outsize)
    elif isinstance(link, L.Convolution2D):
        y = F.convolution_2d(x, W, b, link.stride,
                             link.pad if pad is None else pad)
    elif isinstance(link, L.Linear):
        y = F.linear(x, W, b)
    else:
        raise TypeError('no mixed-precision rule for %s'
                        % type(link).__name__)
    return to_compute(y, precision)
