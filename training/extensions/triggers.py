"""Triggers of a training run's length."""
from chainer.training.triggers import IntervalTrigger


class StopTrigger(IntervalTrigger):
    """Fires once ``period`` iterations or epochs are done. chainer's
    IntervalTrigger fires on *crossing* a multiple (a run resumed past it
    would go on) and keeps state: it cannot be asked several times an
    iteration (by the trainer, the snapshots, the attention pictures)."""

    def __call__(self, trainer):
        updater = trainer.updater
        done = (updater.iteration if self.unit == 'iteration'
                else updater.epoch_detail)
        return done >= self.period


def every_and_last(interval):
    """Fires every ``interval`` iterations and at the run's last."""
    every = IntervalTrigger(interval, 'iteration')

    def trigger(trainer):
        fired = every(trainer)  # called at each iteration: it counts
        return fired or trainer.stop_trigger(trainer)
    return trigger
