"""``--dtype mixed16``: float16 layers over float32 weights
(:mod:`models.precision`) with dynamic loss scaling."""
from chainer.training import extension


def set_precision(model, optimizer, dtype):
    """Make ``model`` compute in ``dtype``; the mixed ones with chainer's
    dynamic loss scaling (small float16 gradients do not flush to zero:
    the scale starts at 1 and doubles each step until a gradient
    overflows, that update skipped and the scale halved, then x2 every
    1000 steps)."""
    model.precision = dtype
    if dtype != 'float32':
        optimizer.loss_scaling()


def loss_scale(optimizer):
    """The optimizer's current loss scale, None without loss scaling."""
    return optimizer._loss_scale


class LossScale(extension.Extension):
    """Reports ``loss_scale`` and keeps it in the snapshots (chainer's
    ``Optimizer.serialize`` does not: a resume would start from 1)."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def __call__(self, trainer):
        trainer.observation['loss_scale'] = loss_scale(self.optimizer)

    def serialize(self, serializer):
        opt = self.optimizer
        opt._loss_scale = float(serializer('scale', opt._loss_scale))
        opt._loss_scaling_isnan_ever = bool(serializer(
            'overflowed', opt._loss_scaling_isnan_ever))
