"""Mixed precision: float32 parameters, layers computing in float16.

Each layer casts its input and weights to float16 with ``F.cast``, so the
weights' gradients come back in float32. (Chainer's own ``mixed16`` keeps
float32 copies inside the update rules, which its serializers do not
save: snapshots would lose the master weights.) ``'mixed16-emulated'``
rounds the same values and their gradients to float16 but computes in
float32: float16 storage with float32 accumulation, at float32 speed on a
CPU (numpy has no fast float16 matrix product).
"""
import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np

#: The precisions a model computes in.
PRECISIONS = ('float32', 'mixed16', 'mixed16-emulated')


def cast(x, dtype):
    """``x`` in ``dtype`` (itself if it is)."""
    return x if x.dtype == dtype else F.cast(x, dtype)


class RoundToHalf(chainer.FunctionNode):
    """Rounds to the nearest float16 (inf beyond), keeping the dtype; so
    is its gradient."""

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
    """``link(x)`` (a convolution, deconvolution or linear link) computed
    in ``precision``; ``pad`` overrides a convolution's padding."""
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
        raise TypeError('no mixed-precision rule for %s' % type(link).__name__)
    return to_compute(y, precision)
