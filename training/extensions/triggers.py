"""Triggers of a training run's length."""
from chainer.training.triggers import IntervalTrigger


class StopTrigger(IntervalTrigger):
    """Stops once ``period`` iterations or epochs are done.

    chainer's IntervalTrigger fires when the count *crosses* a multiple of
    the period, so a run resumed from a snapshot at or past the end (e.g.
    ``--resume`` with fewer ``--iterations``) would go on to the next
    multiple; this one compares the progress itself, and can be asked any
    number of times.
    """

    def __call__(self, trainer):
        updater = trainer.updater
        done = (updater.iteration if self.unit == 'iteration'
                else updater.epoch_detail)
        return done >= self.period


def every_and_last(interval):
    """A trigger that fires every ``interval`` iterations and at the last
    iteration of the run, however short."""
    every = IntervalTrigger(interval, 'iteration')

    def trigger(trainer):
        fired = every(trainer)  # called at each iteration: it counts
        return fired or trainer.stop_trigger(trainer)
    return trigger
