"""Learning-rate schedules (``--lr-schedule``): chainer's PolynomialShift
and StepShift, and a cosine decay chainer lacks, each called after every
update and resumed exactly from a snapshot.

The optimizer is Adam, whose learning rate is ``alpha`` (chainer's
``Adam.lr`` is the bias-corrected step size it derives from it); SGD-like
optimizers call it ``lr``. :func:`lr_attribute` picks the one the optimizer
has.
"""
import math

import chainer
from chainer.training import extensions

SCHEDULES = ('constant', 'poly', 'step', 'cosine')
# schedules that decay to 0 over a number of iterations
DECAYING = ('poly', 'cosine')


def lr_attribute(optimizer):
    """``'alpha'`` (Adam) or ``'lr'`` (SGD and the others)."""
    return 'alpha' if hasattr(optimizer, 'alpha') else 'lr'


def schedule_iterations(stop, n_examples, batch_size, n_ranks=1):
    """The iterations of a run of ``stop`` ``(length, unit)``: the length
    itself, or ``ceil(epochs * shard / batch_size)`` where a rank's shard
    holds ``ceil(n_examples / n_ranks)`` examples."""
    length, unit = stop
    if unit == 'iteration':
        return int(length)
    shard = -(-n_examples // n_ranks)
    return max(1, int(math.ceil(length * shard / batch_size)))


class _RestoredOnLoad(object):
    """Sets the optimizer's attribute to the value the snapshot recorded
    when it is loaded: the trainer's snapshot is read after every
    extension's ``initialize``, so chainer's shifts would leave the
    learning rate at its initial value for the first update after a
    resume."""

    def serialize(self, serializer):
        super().serialize(serializer)
        if (isinstance(serializer, chainer.serializer.Deserializer) and
                self._last_value is not None):
            setattr(self._optimizer, self._attr, self._last_value)


class PolynomialShift(_RestoredOnLoad, extensions.PolynomialShift):
    """``init * (1 - t / max_count) ** rate`` after the ``t``-th update."""


class StepShift(_RestoredOnLoad, extensions.StepShift):
    """``init * gamma ** floor(t / step)`` after the ``t``-th update."""


class CosineShift(PolynomialShift):
    """``init * (1 + cos(pi * min(t, max_count) / max_count)) / 2`` after
    the ``t``-th update: from ``init`` down to 0 at ``max_count``, 0 after
    it (PolynomialShift's bookkeeping, a cosine's value)."""

    def __init__(self, attr, max_count, optimizer):
        super().__init__(attr, 1, max_count, optimizer=optimizer)

    def __call__(self, trainer):
        self._t += 1
        progress = min(self._t / self._max_count, 1)
        self._update_value(self._optimizer,
                           self._init * (1 + math.cos(math.pi * progress)) / 2)


def lr_schedule(optimizer, schedule, iterations=None, power=0.9, step=None,
                gamma=0.1):
    """The trainer extension of ``--lr-schedule`` (None for
    ``'constant'``), to be called after every update.

    Args:
        optimizer: the main optimizer; its learning rate at the start of
            training is the schedule's initial value.
        schedule (str): one of :data:`SCHEDULES`.
        iterations (int): updates over which ``poly`` and ``cosine`` decay
            to 0.
        power (float): the exponent of ``poly``.
        step (int), gamma (float): ``step`` multiplies the rate by
            ``gamma`` every ``step`` updates.
    """
    attr = lr_attribute(optimizer)
    if schedule == 'constant':
        return None
    if schedule == 'poly':
        return PolynomialShift(attr, power, iterations, optimizer=optimizer)
    if schedule == 'step':
        return StepShift(attr, gamma, step, optimizer=optimizer)
    if schedule == 'cosine':
        return CosineShift(attr, iterations, optimizer)
    raise ValueError('unknown schedule %r' % schedule)
