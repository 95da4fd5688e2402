"""Guards of a training run: stop on a non-finite loss or weight, skip
bad samples on request.

Every failure here is an exception of :mod:`runtime.errors`.
"""
import sys

import chainer
import numpy as np
from chainer.training import extension, extensions

from runtime.errors import DatasetError, NonFiniteError


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


class FiniteLoss(extension.Extension):
    """Stops training at the first iteration whose reported loss terms
    (every ``main/*`` value) are not finite, before anything of that
    iteration is snapshotted or saved.

    Args:
        describe_last_good: callable returning a phrase about the snapshot
            training can go back to (for the message).
    """
    trigger = 1, 'iteration'
    priority = extension.PRIORITY_WRITER + 50   # before every other one

    def __init__(self, describe_last_good, prefix='main/'):
        self.prefix = prefix
        self.describe_last_good = describe_last_good

    def __call__(self, trainer):
        terms = {k: _to_numpy(v) for k, v in trainer.observation.items()
                 if k.startswith(self.prefix)}
        terms = {k: v for k, v in terms.items() if v is not None}
        bad = sorted(k for k, v in terms.items() if not np.isfinite(v).all())
        if not bad:
            return
        values = ', '.join('%s=%s' % (k, _show(terms[k]))
                           for k in sorted(terms))
        raise NonFiniteError(
            'iteration %d: non-finite loss %s (%s); training stopped, '
            'model.npz not written; %s'
            % (trainer.updater.iteration, ', '.join(bad), values,
               self.describe_last_good()))


class FiniteWeights(extensions.FailOnNonNumber):
    """chainer's check of every trained weight after each update, before
    anything of that iteration is snapshotted or saved; its RuntimeError
    becomes one line naming the iteration and the last good snapshot
    (``describe_last_good()``)."""
    priority = extension.PRIORITY_WRITER + 50

    def __init__(self, describe_last_good):
        self.describe_last_good = describe_last_good

    def __call__(self, trainer):
        try:
            super().__call__(trainer)
        except RuntimeError:
            e = NonFiniteError(
                'iteration %d: weights hold NaN or inf; training stopped, '
                'model.npz not written; %s' % (trainer.updater.iteration,
                                               self.describe_last_good()))
            e.every_rank = True     # the ranks share their weights
            raise e


class SkipBadSamples(chainer.dataset.DatasetMixin):
    """A dataset whose unreadable examples are replaced by the next good
    one, with a warning per bad file (``--skip-bad``).

    Without it a :class:`DatasetError` stops the run naming the file. The
    replacement is deterministic, so resumed runs draw the same batches.
    Attributes of the wrapped dataset (``n_class``, ``ids``...) show
    through.
    """

    def __init__(self, dataset, name='train', stream=None):
        self.dataset = dataset
        self.name = name
        self.bad = {}         # index -> message
        self.stream = stream

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
                      % (self.name, len(self.bad), e),
                      file=self.stream or sys.stderr)
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
    """Reports ``bad_samples`` (skipped so far, over the given
    :class:`SkipBadSamples`) to the log, and keeps the count across a
    resume. Registered with or without ``--skip-bad`` (then it does
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
