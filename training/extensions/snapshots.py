"""Resumable snapshots of the whole trainer, written by chainer's
``extensions.snapshot`` (and its ``n_retains`` clean-up) through
:func:`runtime.files.atomic_write`. By hand, where chainer lacks what
matters:

* the snapshot to resume from (:func:`pick`): chainer's ``autoload`` takes
  the newest by mtime, fails on a bad one and unpickles; here the newest
  that reads back without pickle and holds finite weights, a bad one
  renamed ``*.corrupt`` (never deleted);
* the run's flags (:func:`changed_flags`) and the global RNG states of
  numpy and ``random`` (shuffles, flips, CPU dropout) saved with the
  trainer: another run's snapshot is refused, and a resumed CPU run takes
  the same steps as an uninterrupted one;
* a snapshot at the end and, on SIGINT or SIGTERM, after the current
  iteration, then :class:`Interrupted` (every rank of a data-parallel run
  after the same one).
"""
import json
import os
import random
import re
import signal
import sys
import threading

import chainer
import numpy as np
from chainer.serializers import npz
from chainer.training import extension, extensions
from chainer.training.extensions import snapshot_writers

from models.io import read_meta
from runtime.errors import (Interrupted, ModelFileError, SnapshotError,
                            UsageError, one_line)
from runtime.files import atomic_write, output_path, read_npz
from training.extensions.best import FILENAME as BEST
from training.extensions.triggers import StopTrigger

PREFIX = 'snapshot_iter_'
FILENAME = PREFIX + '{.updater.iteration}.npz'
_NAME = re.compile(r'^%s(\d+)\.npz$' % PREFIX)
CONFIG = 'extensions/snapshot/config'
# Flags that may differ when a run is resumed: how long it goes on, where
# it runs and how often it saves (and the records of the command line).
RESUMABLE = ('iterations', 'epochs', 'resume', 'force', 'device', 'out',
             'snapshot_interval', 'skip_bad', 'attention_interval',
             'communicator', 'rank_weights', 'val_interval', 'tensorboard',
             'max_image_pixels', 'command', 'versions', 'git_commit')


class CorruptSnapshot(Exception):
    """A snapshot file that cannot be (fully) read: ``path: reason``."""


def list_snapshots(out):
    """``[(iteration, path)]`` of the snapshots in ``out``, oldest first."""
    if not os.path.isdir(out):
        return []
    return sorted((int(m.group(1)), os.path.join(out, name))
                  for name in os.listdir(out) for m in [_NAME.match(name)]
                  if m)


def read_snapshot(path):
    """Every array of a snapshot; CorruptSnapshot unless it is a readable
    npz of a trainer, without pickled data, with finite weights."""
    arrays = read_npz(path, 'snapshot', CorruptSnapshot, 'a snapshot')
    if 'updater/iteration' not in arrays:
        raise CorruptSnapshot('%s: not a trainer snapshot (no '
                              'updater/iteration)' % path)
    for k, v in arrays.items():
        if (k.startswith('updater/model:') and v.dtype.kind == 'f' and
                not np.isfinite(v).all()):
            raise CorruptSnapshot('%s: holds non-finite weights (%s)'
                                  % (path, k))
    return arrays


def set_aside(path, suffix):
    """Rename ``path`` to ``path + suffix`` (``.1``, ``.2``... if taken);
    returns the new name."""
    new, k = path + suffix, 0
    while os.path.exists(new):
        k += 1
        new = '%s%s.%d' % (path, suffix, k)
    os.replace(path, new)
    return os.path.basename(new)


def pick(out, resume):
    """``(path, arrays)`` of the snapshot to resume from: the file
    ``resume`` (no fallback), else the newest good one in ``out`` (bad
    ones set aside; ``resume == 'latest'``: one must exist), or None."""
    if resume not in (None, 'latest'):
        try:
            return resume, read_snapshot(resume)
        except CorruptSnapshot as e:
            raise SnapshotError('--resume %s' % e)
    found = list_snapshots(out)
    for _, path in reversed(found):
        try:
            return path, read_snapshot(path)
        except CorruptSnapshot as e:
            print('warning: snapshot %s; kept as %s, using the previous one'
                  % (e, set_aside(path, '.corrupt')), file=sys.stderr)
    if resume == 'latest':
        raise SnapshotError('--resume: no usable snapshot in %s' % out)
    if found:
        print('warning: no usable snapshot in %s; starting from scratch'
              % out, file=sys.stderr)
    return None


def _short(value):
    if isinstance(value, str):
        return value
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + '...'


def changed_flags(path, arrays, config, flags):
    """UsageError naming each entry of ``config`` (``--flag`` for the names
    in ``flags``) but :data:`RESUMABLE` that differs from the one the
    snapshot ``path`` recorded."""
    if CONFIG not in arrays:
        raise UsageError('%s records no flags of its run (written by an '
                         'older version); pass --force to start over' % path)
    old = json.loads(str(arrays[CONFIG]))
    changed = []
    for key in sorted(set(config) & set(old) - set(RESUMABLE)):
        a, b = old[key], config[key]
        if a == b or (isinstance(a, str) and isinstance(b, str) and
                      os.path.realpath(a) == os.path.realpath(b)):
            continue
        name = '--' + key.replace('_', '-') if key in flags else key
        changed.append('%s %s (was %s)' % (name, _short(b), _short(a)))
    if changed:
        raise UsageError('%s belongs to a run trained with other flags: %s; '
                         'resuming it would mix two runs: rerun with its '
                         'flags, or pass --force to start over'
                         % (path, ', '.join(changed)))


def abandon_later(out, path, iteration):
    """Set aside (``*.superseded``) what came after the snapshot ``path``
    of ``iteration`` that is resumed: newer snapshots and a later best
    model."""
    later = [p for it, p in list_snapshots(out) if it > iteration and
             os.path.abspath(p) != os.path.abspath(path)]
    best = os.path.join(out, BEST)
    if os.path.isfile(best):
        try:
            kept = read_meta(best).get('best', {}).get('iteration')
        except (ModelFileError, AttributeError):
            kept = None
        if kept is None or kept > iteration:
            later.append(best)
    for p in later:
        print('warning: %s was written after the resumed snapshot (iteration '
              '%d); kept as %s' % (p, iteration, set_aside(p, '.superseded')),
              file=sys.stderr)
    print('resuming from %s (iteration %d)' % (path, iteration),
          file=sys.stderr)


def resume(trainer, resumed, context=None):
    """Load ``resumed``, the ``(path, arrays)`` of :func:`pick`, into the
    trainer (before it runs: its extensions' ``initialize`` then sees the
    state, e.g. a learning-rate schedule's last value)."""
    path, arrays = resumed
    try:
        npz.NpzDeserializer(arrays).load(trainer)
    except Exception as e:
        raise SnapshotError(
            'snapshot %s does not fit this run (%s: %s); rerun with the '
            'flags it was made with, or pass --force to start over'
            % (path, type(e).__name__, one_line(e)))
    if context is not None and not context.is_writer:
        context.reseed(trainer.updater.iteration)


class Writer(snapshot_writers.Writer):
    """chainer's writer protocol (and its clean-up hook) over
    :func:`runtime.files.atomic_write`, synced; refuses pickled data, and
    does not compress (weights hardly do; zlib took most of the time)."""

    def __call__(self, filename, outdir, target):
        pickled = sorted(k for k, v in target.items() if v.dtype.hasobject)
        if pickled:
            raise SnapshotError('snapshot not written: %s is not a plain '
                                'array (e.g. None), which npz could only '
                                'store as pickled data' % pickled[0])
        with atomic_write(output_path(outdir, filename), 'wb', sync=True) as f:
            np.savez(f, **target)
        self._post_save()


class Snapshot(extension.Extension):
    """Snapshots of the trainer every ``interval`` iterations, at the end
    (``stop``: the run's ``(length, unit)``) and on SIGINT/SIGTERM, with
    the run's flags ``config``; ``context``: a data-parallel run's."""
    trigger = 1, 'iteration'
    priority = -100
    name = 'snapshot'

    def __init__(self, interval, stop=None, n_retains=2, config=None,
                 context=None):
        self.interval = int(interval)
        self._at_end = StopTrigger(*stop) if stop else (lambda _: False)
        self.config, self.context = config, context
        self.writes = context is None or context.is_writer
        self.signal = None
        self._handlers = {}
        self._inner = extensions.snapshot(filename=FILENAME,
                                          n_retains=n_retains, writer=Writer())

    def initialize(self, trainer):
        if self.writes:
            self._inner.initialize(trainer)  # registers the n_retains clean-up
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._handlers[s] = signal.signal(s, self._on_signal)

    def __call__(self, trainer):
        if self.context is not None:
            self.signal = self.context.any_signal(self.signal)
        it = trainer.updater.iteration
        if self.writes and (it % self.interval == 0 or self._at_end(trainer)
                            or self.signal is not None):
            self._inner(trainer)
        if self.signal is not None:
            saved = os.path.join(trainer.out, FILENAME.format(trainer))
            e = Interrupted(
                '%s at iteration %d; saved %s; run the same command again to '
                'resume' % (signal.Signals(self.signal).name, it, saved),
                self.signal)
            e.every_rank = self.context is not None   # stopped together
            raise e

    def _on_signal(self, signum, frame):
        if self.signal is not None:        # a second one: stop at once
            self.finalize()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(signum)
            return
        self.signal = signum
        os.write(2, ('\n%s: saving a snapshot at the end of this iteration, '
                     'then stopping (send it again to stop at once)\n'
                     % signal.Signals(signum).name).encode())

    def finalize(self):
        for s, handler in self._handlers.items():
            signal.signal(s, handler)
        self._handlers = {}

    def serialize(self, serializer):
        """The RNG states and (saved only) the run's flags; saving sets
        the states they are."""
        if isinstance(serializer, chainer.serializer.Serializer):
            serializer('config', json.dumps(self.config))
        s, p = serializer['numpy_random'], serializer['python_random']
        _, keys, pos, has_gauss, cached = np.random.get_state()
        np.random.set_state((
            'MT19937', np.asarray(s('keys', keys), dtype=np.uint32),
            int(s('pos', np.int64(pos))),
            int(s('has_gauss', np.int64(has_gauss))),
            float(s('cached_gaussian', np.float64(cached)))))
        version, internal, gauss = random.getstate()
        gauss = float(p('gauss', np.float64(np.nan if gauss is None
                                            else gauss)))
        random.setstate((int(p('version', np.int64(version))),
                         tuple(int(v) for v in p(
                             'internal', np.array(internal, np.int64))),
                         None if np.isnan(gauss) else gauss))
