"""``--keep-best METRIC``: ``OUT/model_best.npz``, the model whose
validation METRIC beat every earlier value, decided by chainer's
``MaxValueTrigger`` (in the snapshots: a resumed run keeps the best)."""
import math
import sys

from chainer.training import extension, triggers

from models.io import save_model
from runtime.files import output_path

FILENAME = 'model_best.npz'


class BestValue(triggers.MaxValueTrigger):
    """chainer's trigger on ``validation/main/<metric>``, starting from
    -inf (its None would be pickled into the snapshot) and warning once
    where the validation does not report the metric (e.g. mAP without
    positive images), where chainer's raises KeyError."""

    def __init__(self, metric, interval):
        super().__init__('validation/main/' + metric, (interval, 'iteration'))
        self._best_value = -math.inf
        self.metric, self.warned = metric, False

    def __call__(self, trainer):
        if self._key in trainer.observation:
            return super().__call__(trainer)
        if self._interval_trigger(trainer) and not self.warned:
            self.warned = True
            print('warning: --keep-best %s can never write %s: the '
                  'validation at iteration %d reports no %s (see the lines '
                  'above)' % (self.metric, FILENAME,
                              trainer.updater.iteration, self.metric),
                  file=sys.stderr)
        return False


def keep_best(trainer, model, metric, interval):
    """Extend ``trainer`` to write ``OUT/model_best.npz`` (``_meta/best``:
    ``metric``, ``score``, ``iteration``) whenever ``metric``, validated
    every ``interval`` iterations, beats every earlier value."""
    best = BestValue(metric, interval)

    @extension.make_extension(priority=extension.PRIORITY_READER)
    def write_best(trainer):
        save_model(output_path(trainer.out, FILENAME), model, best=dict(
            metric=metric, score=best._best_value,
            iteration=trainer.updater.iteration))
    trainer.extend(write_best, trigger=best)
