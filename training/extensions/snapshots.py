"""Resumable snapshots of the whole trainer.

Written by chainer's ``extensions.snapshot`` (its writer protocol and its
``n_retains`` clean-up) through :func:`runtime.files.atomic_write`, synced
to the disk. Kept by hand, where chainer lacks what matters:

* choosing the snapshot to resume from (:func:`pick`): chainer's
  ``autoload`` takes the newest file by mtime, fails on a bad one and
  unpickles (its ``load_npz`` passes ``allow_pickle=True``). Here the
  newest snapshot whose every array reads back (zip CRCs) with
  ``allow_pickle=False`` and whose weights are finite is used; a bad one
  is reported, renamed ``*.corrupt`` (never deleted) and the previous one
  tried. Snapshots are data, never code: a state that npz could only store
  pickled (an object array, e.g. a None) is refused when writing;
* the run's flags (its config, see :func:`changed_flags`) and the global
  RNG states of numpy (the iterator shuffle, the random flips and CPU
  dropout draw from it) and of ``random`` are saved with the trainer: a
  resumed CPU run takes the same steps as an uninterrupted one, and
  another run's snapshot is refused naming the flags that differ;
* a snapshot at the end of training and, on SIGINT or SIGTERM, at the end
  of the current iteration, then :class:`Interrupted` (in a data-parallel
  run a signal received by any rank stops all of them after the same
  iteration; only rank 0 writes).
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
from runtime.files import atomic_write, open_input, output_path
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
    """Every array of a snapshot file, read and checked.

    Raises:
        CorruptSnapshot: not a regular file, truncated, not an npz, a
            damaged member (CRC), pickled data, not a trainer snapshot, or
            non-finite weights.
    """
    arrays, key = {}, None
    with open_input(path, 'snapshot', error=CorruptSnapshot) as f:
        if f.read(4) != b'PK\x03\x04':
            raise CorruptSnapshot('%s: not an npz file' % path)
        f.seek(0)
        try:
            with np.load(f, allow_pickle=False) as z:
                for key in z.files:
                    arrays[key] = z[key]
        except Exception as e:  # zipfile, zlib and numpy errors alike
            if isinstance(e, ValueError) and 'allow_pickle' in str(e):
                raise CorruptSnapshot('%s: unsafe: it holds pickled data '
                                      '(object array %s), which is never '
                                      'loaded' % (path, key))
            raise CorruptSnapshot('%s: truncated or corrupt (%s: %s)'
                                  % (path, type(e).__name__, one_line(e)))
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
    """``(path, arrays)`` of the snapshot a run on ``out`` resumes from:
    ``resume`` as ``--resume`` takes it (a file: that one, no fallback;
    ``'latest'``: one must exist), else the newest good one in ``out``
    (bad ones set aside), or None."""
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
    in ``flags``) that shapes the training (not :data:`RESUMABLE`) and
    differs from the config the snapshot ``path`` recorded."""
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
    """Set aside (``*.superseded``) what a trajectory abandoned by resuming
    ``path`` at ``iteration`` wrote: newer snapshots (an explicit
    ``--resume`` of an older one) and a later best model."""
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
        print('warning: %s was written after the resumed snapshot '
              '(iteration %d); kept as %s' % (
                  p, iteration, set_aside(p, '.superseded')),
              file=sys.stderr)
    print('resuming from %s (iteration %d)' % (path, iteration),
          file=sys.stderr)


def _savez(f, arrays):
    """``savez`` of the serialized trainer, refusing pickled data;
    uncompressed (float weights hardly compress, and zlib took most of the
    time of a snapshot; members still carry their CRC)."""
    pickled = sorted(k for k, v in arrays.items() if v.dtype.hasobject)
    if pickled:
        raise SnapshotError('snapshot not written: %s is not a plain array '
                            '(e.g. None), which npz could only store as '
                            'pickled data' % pickled[0])
    np.savez(f, **arrays)


class Writer(snapshot_writers.Writer):
    """chainer's writer protocol (and its clean-up hook) over
    :func:`runtime.files.atomic_write`, synced to the disk."""

    def __call__(self, filename, outdir, target):
        with atomic_write(output_path(outdir, filename), 'wb', sync=True) as f:
            _savez(f, target)
        self._post_save()


class Snapshot(extension.Extension):
    """Snapshots of the trainer every ``interval`` iterations, at the end
    (``stop``: the run's ``(length, unit)``) and on SIGINT/SIGTERM;
    ``resumed``: the ``(path, arrays)`` of :func:`pick`, loaded on start;
    ``config``: the run's flags, saved with it; ``context``: the
    :class:`training.distributed.Context` of a data-parallel run."""
    trigger = 1, 'iteration'
    priority = -100
    name = 'snapshot'

    def __init__(self, interval, stop=None, n_retains=2, resumed=None,
                 config=None, context=None):
        self.interval = int(interval)
        self._at_end = StopTrigger(*stop) if stop else (lambda _: False)
        self.resumed, self.config, self.context = resumed, config, context
        self.writes = context is None or context.is_writer
        self.last = None          # iteration of the last snapshot written
        self.signal = None
        self._handlers = {}
        self._out = None
        self._inner = extensions.snapshot(filename=FILENAME,
                                          n_retains=n_retains,
                                          writer=Writer())

    def initialize(self, trainer):
        self._out = trainer.out
        if self.resumed is not None:
            path, arrays = self.resumed
            try:
                npz.NpzDeserializer(arrays).load(trainer)
            except Exception as e:
                raise SnapshotError(
                    'snapshot %s does not fit this run (%s: %s); rerun with '
                    'the flags it was made with, or pass --force to start '
                    'over' % (path, type(e).__name__, one_line(e)))
            self.last = trainer.updater.iteration
            if self.context is not None and not self.context.is_writer:
                self.context.reseed(self.last)
        if self.writes:
            self._inner.initialize(trainer)  # registers the n_retains clean-up
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._handlers[s] = signal.signal(s, self._on_signal)

    def __call__(self, trainer):
        if self.context is not None:
            self.signal = self.context.any_signal(self.signal)
        it = trainer.updater.iteration
        due = (it % self.interval == 0 or self.signal is not None or
               self._at_end(trainer))
        if due and it != self.last:
            if self.writes:
                self._inner(trainer)
            self.last = it
        if self.signal is not None:
            e = Interrupted(
                '%s at iteration %d; saved %s; run the same command again to '
                'resume' % (signal.Signals(self.signal).name, it,
                            os.path.join(trainer.out,
                                         FILENAME.format(trainer))),
                self.signal)
            e.every_rank = self.context is not None   # stopped together
            raise e

    def describe_last_good(self):
        found = list_snapshots(self._out) if self._out else []
        if not found:
            return 'no snapshot was written yet'
        return ('last good snapshot: %s (iteration %d), which a rerun with '
                'other flags (e.g. a lower --lr) resumes from'
                % (found[-1][1], found[-1][0]))

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
        """The RNG states and the run's flags, with the trainer."""
        s, p = serializer['numpy_random'], serializer['python_random']
        if isinstance(serializer, chainer.serializer.Serializer):
            serializer('config', json.dumps(self.config))
            _, keys, pos, has_gauss, cached = np.random.get_state()
            s('keys', keys)
            s('pos', np.int64(pos))
            s('has_gauss', np.int64(has_gauss))
            s('cached_gaussian', np.float64(cached))
            version, internal, gauss = random.getstate()
            p('version', np.int64(version))
            p('internal', np.array(internal, dtype=np.int64))
            p('gauss', np.float64(np.nan if gauss is None else gauss))
            return
        np.random.set_state((
            'MT19937', np.asarray(s('keys', None), dtype=np.uint32),
            int(s('pos', None)), int(s('has_gauss', None)),
            float(s('cached_gaussian', None))))
        gauss = float(p('gauss', None))
        random.setstate((int(p('version', None)),
                         tuple(int(v) for v in p('internal', None)),
                         None if np.isnan(gauss) else gauss))
