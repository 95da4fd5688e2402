"""``--dtype mixed16``: float16 layers over float32 weights
(:mod:`models.precision`) with dynamic loss scaling."""
from chainer.training import extension


def set_precision(model, optimizer, dtype):
    """Make ``model`` compute in ``dtype`` (one of
    :data:`models.precision.PRECISIONS`); for the mixed ones turn
    on chainer's dynamic loss scaling in ``optimizer``: the loss is
    multiplied by the scale before the backward pass, so that small float16
    gradients do not flush to zero, and the gradients divided by it before
    the update. The scale starts at 1 and doubles each step until a
    gradient overflows; that update is skipped, the scale halved, and from
    then on it grows by 2 every 1000 steps."""
    model.precision = dtype
    if dtype != 'float32':
        optimizer.loss_scaling()


def loss_scale(optimizer):
    """The optimizer's current loss scale, None without loss scaling."""
    return optimizer._loss_scale


class LossScale(extension.Extension):
    """Reports ``loss_scale`` and keeps the dynamic loss-scaling state in
    the trainer's snapshots: chainer's ``Optimizer.serialize`` leaves it
    out, and a resumed run would start again from a scale of 1."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def __call__(self, trainer):
        trainer.observation['loss_scale'] = loss_scale(self.optimizer)

    def serialize(self, serializer):
        opt = self.optimizer
        opt._loss_scale = float(serializer('scale', opt._loss_scale))
        opt._loss_scaling_isnan_ever = bool(serializer(
            'overflowed', opt._loss_scaling_isnan_ever))
