"""Guards of a training run: stop on a non-finite loss or weight, skip
bad samples on request (``--skip-bad``)."""
import sys

import chainer
import numpy as np
from chainer.training import extension, extensions

from runtime.errors import DatasetError, NonFiniteError
from training.extensions.snapshots import list_snapshots


def _to_numpy(value):
    if isinstance(value, chainer.Variable):
        value = value.array
    if hasattr(value, 'get'):        # cupy
        value = value.get()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None                   # not a number: not checked


def _show(value):
    return '%.4g' % value if value.size == 1 else 'array'


class Finite(extensions.FailOnNonNumber):
    """Stops training, before anything of the iteration is saved, when a
    reported loss term (``main/*``) or a trained weight (chainer's check)
    is not finite; one line names the terms and the last good snapshot.
    The loss is checked too: with loss scaling a non-finite gradient only
    skips the update, and a frozen layer's never reaches a weight."""
    priority = extension.PRIORITY_WRITER + 50   # before every other one
    name = 'FiniteLoss'     # its trigger's state in earlier snapshots

    def __call__(self, trainer):
        terms = {k: _to_numpy(v) for k, v in trainer.observation.items()
                 if k.startswith('main/')}
        terms = {k: v for k, v in terms.items() if v is not None}
        bad = sorted(k for k, v in terms.items() if not np.isfinite(v).all())
        if bad:
            _stop(trainer, 'non-finite loss %s (%s)' % (
                ', '.join(bad), ', '.join('%s=%s' % (k, _show(terms[k]))
                                          for k in sorted(terms))))
        try:
            super().__call__(trainer)
        except RuntimeError:    # the ranks share their weights
            _stop(trainer, 'weights hold NaN or inf', every_rank=True)


def _stop(trainer, what, every_rank=False):
    found = list_snapshots(trainer.out)
    e = NonFiniteError(
        'iteration %d: %s; training stopped, model.npz not written; %s'
        % (trainer.updater.iteration, what, 'last good snapshot: %s '
           '(iteration %d)' % found[-1][::-1] if found else
           'no snapshot was written yet'))
    e.every_rank = every_rank
    raise e


class SkipBadSamples(chainer.dataset.DatasetMixin):
    """A dataset whose unreadable examples are replaced by the next good
    one (deterministic: a resumed run draws the same batches), with a
    warning per bad file; the wrapped dataset's attributes show through."""

    def __init__(self, dataset, name='train'):
        self.dataset, self.name = dataset, name
        self.bad = {}         # index -> message

    def __getattr__(self, attr):
        if attr == 'dataset':
            raise AttributeError(attr)
        return getattr(self.dataset, attr)

    def __len__(self):
        return len(self.dataset)

    @property
    def n_bad(self):
        return len(self.bad) + len(getattr(self.dataset, 'missing', ()))

    def get_example(self, i):
        n = len(self.dataset)
        for k in range(n):
            j = (i + k) % n
            if j in self.bad:
                continue
            try:
                return self.dataset[j]
            except DatasetError as e:
                self.bad[j] = str(e)
                print('warning: skipping a bad %s sample (%d so far): %s'
                      % (self.name, len(self.bad), e), file=sys.stderr)
        raise DatasetError('every one of the %d %s samples is bad (e.g. %s)'
                           % (n, self.name, next(iter(self.bad.values()))))


def find_wrapped(dataset, cls):
    """The first ``cls`` instance in a chain of dataset wrappers
    (``TransformDataset``, ``PixelSupervisionFlag``...), or None."""
    seen = 0
    while dataset is not None and seen < 16:
        if isinstance(dataset, cls):
            return dataset
        attrs = getattr(dataset, '__dict__', {})
        dataset = attrs.get('dataset', attrs.get('_dataset'))
        seen += 1
    return None


class BadSampleCount(extension.Extension):
    """Reports ``bad_samples`` of the :class:`SkipBadSamples` and keeps
    them in the snapshots; registered without ``--skip-bad`` too (doing
    nothing), so that a run can be resumed with the flag added."""
    trigger = 10, 'iteration'
    priority = extension.PRIORITY_WRITER

    def __init__(self, skippers):
        self.skippers = list(skippers)

    def __call__(self, trainer):
        if self.skippers:
            chainer.report({'bad_samples':
                            sum(s.n_bad for s in self.skippers)})

    def serialize(self, serializer):
        for k, s in enumerate(self.skippers):
            if isinstance(serializer, chainer.serializer.Serializer):
                serializer('bad%d' % k, np.array(sorted(s.bad), np.int64))
                continue
            try:
                seen = serializer('bad%d' % k, None)
            except KeyError:      # a snapshot taken without --skip-bad
                continue
            for j in np.asarray(seen).ravel().tolist():
                s.bad.setdefault(int(j), 'seen before the resume')

    def finalize(self):
        n = sum(s.n_bad for s in self.skippers)
        if n:
            print('warning: %d bad samples were skipped (see the warnings '
                  'above and bad_samples in the log)' % n, file=sys.stderr)
