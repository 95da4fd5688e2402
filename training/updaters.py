"""Updaters of the custom training steps."""
from chainer.training import StandardUpdater


class GAINUpdater(StandardUpdater):
    """StandardUpdater whose loss (a :class:`GAINLoss`) knows the training
    progress, for the warm-up of its attention terms."""

    def update_core(self):
        loss = self.get_optimizer('main').target
        loss.progress = dict(iteration=self.iteration, epoch=self.epoch_detail)
        super().update_core()
