"""Learning-rate schedules (``--lr-schedule``): chainer's PolynomialShift
and StepShift, and a cosine decay chainer lacks, called after every
update."""
import math

from chainer.training import extensions

SCHEDULES = ('constant', 'poly', 'step', 'cosine')
# schedules that decay to 0 over a number of iterations
DECAYING = ('poly', 'cosine')


def lr_attribute(optimizer):
    """``'alpha'`` (Adam: its ``lr`` is the bias-corrected step derived
    from it) or ``'lr'`` (SGD and the others)."""
    return 'alpha' if hasattr(optimizer, 'alpha') else 'lr'


def schedule_iterations(stop, n_examples, batch_size, n_ranks=1):
    """The iterations of a run of ``stop`` ``(length, unit)``: epochs are
    ``ceil(epochs * shard / batch_size)``, a rank's shard
    ``ceil(n_examples / n_ranks)``."""
    length, unit = stop
    if unit == 'iteration':
        return int(length)
    shard = -(-n_examples // n_ranks)
    return max(1, int(math.ceil(length * shard / batch_size)))


class CosineShift(extensions.PolynomialShift):
    """``init * (1 + cos(pi * min(t, max_count) / max_count)) / 2`` after
    the ``t``-th update (PolynomialShift's bookkeeping, a cosine's
    value)."""

    def __init__(self, attr, max_count, optimizer):
        super().__init__(attr, 1, max_count, optimizer=optimizer)

    def __call__(self, trainer):
        self._t += 1
        progress = min(self._t / self._max_count, 1)
        self._update_value(self._optimizer,
                           self._init * (1 + math.cos(math.pi * progress)) / 2)


def lr_schedule(optimizer, schedule, iterations=None, power=0.9, step=None,
                gamma=0.1):
    """The extension of ``--lr-schedule`` (None for ``'constant'``) from
    the optimizer's learning rate: ``poly`` and ``cosine`` reach 0 after
    ``iterations`` updates (``power``: poly's exponent), ``step``
    multiplies it by ``gamma`` every ``step`` updates."""
    attr = lr_attribute(optimizer)
    if schedule == 'constant':
        return None
    if schedule == 'poly':
        return extensions.PolynomialShift(attr, power, iterations,
                                          optimizer=optimizer)
    if schedule == 'step':
        return extensions.StepShift(attr, gamma, step, optimizer=optimizer)
    if schedule == 'cosine':
        return CosineShift(attr, iterations, optimizer)
    raise ValueError('unknown schedule %r' % schedule)
