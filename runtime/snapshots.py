"""Resumable snapshots of the whole trainer.

Built on chainer's ``extensions.snapshot``, which already writes each
snapshot to a temporary directory and renames it into place (a killed
write never leaves a half file under the snapshot's name) and removes all
but the newest ``n_retains``. :class:`Snapshot` wraps it and replaces its
``autoload``, which takes the newest file by mtime and fails on a bad one:

* the global RNG states of numpy (the iterator shuffle, the random flips
  and CPU dropout draw from it) and of ``random`` are saved with the
  trainer, so a resumed CPU run takes the same steps as an uninterrupted
  one;
* on start it resumes from the snapshot with the highest iteration whose
  every array reads back (zip CRCs checked) and whose weights are finite;
  a truncated or corrupt one is reported, renamed ``*.corrupt`` (never
  deleted) and the previous one is used;
* it also snapshots at the end of training and, on SIGINT or SIGTERM, at
  the end of the current iteration, then stops with :class:`Interrupted`;
* it refuses to write a snapshot of non-finite weights, and to move one
  onto a snapshot name planted in ``--out`` as a symbolic link or a
  directory (``runtime.outdir.output_path``);
* snapshots are data, never code: every value is a plain array (the RNG
  states as integer arrays, chainer's iterator state as numbers, its logs
  as JSON strings), a state that npz could only store as pickled data
  (an object array, e.g. a None) is refused when writing, and reading
  never unpickles (``allow_pickle=False``: a file holding an object array
  is refused in one line, or set aside as corrupt like any other);
* in a data-parallel run only rank 0 reads and writes snapshots: the one it
  resumes from is broadcast to every rank, and a signal received by any
  rank stops all of them after the same iteration (see
  :mod:`runtime.distributed`).
"""
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

from runtime import outdir
from runtime.errors import (Interrupted, NonFiniteError, SnapshotError,
                            one_line)
from runtime.guards import check_finite_params
from runtime.triggers import StopTrigger

PREFIX = 'snapshot_iter_'
FILENAME = PREFIX + '{.updater.iteration}.npz'
_NAME = re.compile(r'^%s(\d+)\.npz$' % PREFIX)
_ZIP_MAGIC = b'PK\x03\x04'


class CorruptSnapshot(Exception):
    """A snapshot file that cannot be (fully) read."""


def list_snapshots(out):
    """``[(iteration, path)]`` of the snapshots in ``out``, oldest first."""
    if not os.path.isdir(out):
        return []
    found = [(int(m.group(1)), os.path.join(out, name))
             for name in os.listdir(out) for m in [_NAME.match(name)] if m]
    return sorted(found)


def snapshot_iteration(path):
    """The iteration a snapshot file holds (only that member is read), or
    None if it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return int(f['updater/iteration'])
    except Exception:  # zipfile, zlib, numpy and OS errors alike
        return None


def resume_point(out, resume):
    """``(iteration, path)`` of the snapshot a run on ``out`` would resume
    from (``resume`` as :class:`Snapshot` takes it: the given file, or the
    newest snapshot in ``out`` whose iteration reads back), or None."""
    paths = ([resume] if resume not in (None, 'latest') else
             [p for _, p in reversed(list_snapshots(out))])
    for path in paths:
        iteration = snapshot_iteration(path)
        if iteration is not None:
            return iteration, path
    return None


def read_snapshot(path):
    """Every array of a snapshot file, read and checked.

    Raises:
        CorruptSnapshot: truncated, not an npz, a damaged member (CRC),
            not a trainer snapshot, or non-finite weights.
    """
    try:
        with open(path, 'rb') as f:
            magic = f.read(4)
    except OSError as e:
        raise CorruptSnapshot('unreadable (%s)' % one_line(e))
    if magic != _ZIP_MAGIC:
        raise CorruptSnapshot('not an npz file' if magic else 'empty file')
    arrays, key = {}, None
    try:
        with np.load(path, allow_pickle=False) as f:
            for key in f.files:
                arrays[key] = f[key]
    except Exception as e:  # zipfile, zlib and numpy errors alike
        if isinstance(e, ValueError) and 'allow_pickle' in str(e):
            raise CorruptSnapshot('unsafe: it holds pickled data (object '
                                  'array %s), which is never loaded' % key)
        raise CorruptSnapshot('truncated or corrupt (%s: %s)'
                              % (type(e).__name__, one_line(e)))
    if 'updater/iteration' not in arrays:
        raise CorruptSnapshot('not a trainer snapshot (no updater/iteration)')
    for k, v in arrays.items():
        if (k.startswith('updater/model:') and v.dtype.kind == 'f' and
                not np.isfinite(v).all()):
            raise CorruptSnapshot('holds non-finite weights (%s)' % k)
    return arrays


def set_aside(path, suffix):
    """Rename ``path`` to ``path + suffix`` (``.1``, ``.2``... if taken);
    returns the new path."""
    new, k = path + suffix, 0
    while os.path.exists(new):
        k += 1
        new = '%s%s.%d' % (path, suffix, k)
    os.replace(path, new)
    return new


def _save_synced(path, arrays):
    """``save_npz`` of the serialized trainer (the dict of arrays that
    chainer's snapshot passes) that refuses to pickle and reaches the disk
    before the writer's rename; uncompressed (float weights hardly
    compress, and zlib took most of the time of a snapshot; members still
    carry their CRC)."""
    pickled = sorted(k for k, v in arrays.items() if v.dtype.hasobject)
    if pickled:
        raise SnapshotError('snapshot not written: %s is not a plain array '
                            '(e.g. None), which npz could only store as '
                            'pickled data' % pickled[0])
    with open(path, 'wb') as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())


class _Writer(snapshot_writers.SimpleWriter):
    """chainer's writer (a temporary directory, then a move) that first
    refuses a snapshot name planted in ``--out`` as a symbolic link or a
    directory, into which the move would go."""

    def save(self, filename, out, target, savefun, **kwds):
        outdir.output_path(out, filename)
        super().save(filename, out, target, savefun, **kwds)


class Snapshot(extension.Extension):
    """Snapshots of the trainer every ``interval`` iterations, at the end,
    and on SIGINT/SIGTERM; resumes from the newest good one on start.

    Args:
        interval (int): iterations between snapshots.
        stop: ``(value, unit)`` of the run's stop trigger (for the final
            snapshot).
        n_retains (int): snapshots kept (older ones are removed).
        resume: None to resume from the newest good snapshot in ``out`` if
            there is one; ``'latest'`` to require one; a path to resume from
            that file (no fallback).
        force (bool): start from scratch, ignore existing snapshots.
        context: the :class:`runtime.distributed.Context` of a
            data-parallel run, else None.
    """
    trigger = 1, 'iteration'
    priority = -100
    name = 'snapshot'

    def __init__(self, interval, stop=None, n_retains=2, resume=None,
                 force=False, stream=None, context=None):
        if interval <= 0:
            raise ValueError('snapshot interval must be > 0')
        self.interval = int(interval)
        self._at_end = StopTrigger(*stop) if stop else (lambda _: False)
        self.resume = resume
        self.force = force
        self.stream = stream
        self.context = context
        self.writes = context is None or context.is_writer
        self.last = None          # iteration of the last snapshot written
        self.signal = None
        self._handlers = {}
        self._out = None
        self._target = None
        self._inner = extensions.snapshot(
            filename=FILENAME, n_retains=n_retains,
            writer=_Writer(savefun=_save_synced))

    def _say(self, text):
        print(text, file=self.stream or sys.stderr)

    # -- start ---------------------------------------------------------------
    def initialize(self, trainer):
        self._out = trainer.out
        self._target = trainer.updater.get_optimizer('main').target
        if not self.force:
            if self.context is None:
                self._load(trainer)
            # rank 0 picks and loads one, every rank gets the same state
            elif self.context.resume(trainer, self._load) is not None:
                self.last = trainer.updater.iteration
        if self.writes:
            self._inner.initialize(trainer)  # registers the n_retains clean-up
        self._install_handlers()

    def _load(self, trainer):
        explicit = self.resume not in (None, 'latest')
        candidates = ([self.resume] if explicit else
                      [p for _, p in reversed(list_snapshots(trainer.out))])
        if explicit and not os.path.isfile(self.resume):
            raise SnapshotError('--resume %s: no such snapshot file'
                                % self.resume)
        for path in candidates:
            try:
                arrays = read_snapshot(path)
            except CorruptSnapshot as e:
                if explicit:
                    raise SnapshotError('--resume %s: %s' % (path, e))
                kept = set_aside(path, '.corrupt')
                self._say('warning: snapshot %s is %s; kept as %s, using '
                          'the previous one' % (path, e,
                                                os.path.basename(kept)))
                continue
            try:
                npz.NpzDeserializer(arrays).load(trainer)
            except Exception as e:
                raise SnapshotError(
                    'snapshot %s does not fit this run (%s: %s); rerun with '
                    'the flags it was made with, or pass --force to start '
                    'over' % (path, type(e).__name__, one_line(e)))
            it = trainer.updater.iteration
            self.last = it
            # Newer snapshots belong to a trajectory that is abandoned now
            # (only with an explicit --resume of an older file).
            for later, p in list_snapshots(trainer.out):
                if later > it and os.path.abspath(p) != os.path.abspath(path):
                    kept = set_aside(p, '.superseded')
                    self._say('warning: %s is newer than the resumed '
                              'snapshot; kept as %s'
                              % (p, os.path.basename(kept)))
            self._say('resuming from %s (iteration %d)' % (path, it))
            return arrays
        if self.resume == 'latest':
            raise SnapshotError('--resume: no usable snapshot in %s'
                                % trainer.out)
        if candidates:
            self._say('warning: no usable snapshot in %s; starting from '
                      'scratch' % trainer.out)
        return None

    # -- every iteration -----------------------------------------------------
    def __call__(self, trainer):
        if self.context is not None:
            self.signal = self.context.any_signal(self.signal)
        it = trainer.updater.iteration
        due = (it % self.interval == 0 or self.signal is not None or
               self._at_end(trainer))
        # Weights and signal are the same on every rank of a data-parallel
        # run: the ranks stop here together (``every_rank``).
        if due and it != self.last:
            try:
                check_finite_params(self._target,
                                    'snapshot of iteration %d not written; '
                                    '%s' % (it, self.describe_last_good()))
            except NonFiniteError as e:
                e.every_rank = self.context is not None
                raise
            if self.writes:
                try:
                    self._inner(trainer)
                except OSError as e:     # e.g. a full disk: name the file
                    e.filename = e.filename or os.path.join(
                        trainer.out, FILENAME.format(trainer))
                    raise
            self.last = it
        if self.signal is not None:
            name = signal.Signals(self.signal).name
            e = Interrupted(
                '%s at iteration %d; saved %s; run the same command again to '
                'resume' % (name, it, os.path.join(
                    trainer.out, FILENAME.format(trainer))), self.signal)
            e.every_rank = self.context is not None
            raise e

    def describe_last_good(self):
        found = list_snapshots(self._out) if self._out else []
        if not found:
            return 'no snapshot was written yet'
        it, path = found[-1]
        return ('last good snapshot: %s (iteration %d), which a rerun with '
                'other flags (e.g. a lower --lr) resumes from' % (path, it))

    # -- signals -------------------------------------------------------------
    def _install_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return
        for s in (signal.SIGINT, signal.SIGTERM):
            self._handlers[s] = signal.signal(s, self._on_signal)

    def _restore_handlers(self):
        for s, handler in self._handlers.items():
            signal.signal(s, handler)
        self._handlers = {}

    def _on_signal(self, signum, frame):
        if self.signal is not None:        # a second one: stop at once
            self._restore_handlers()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(signum)
            return
        self.signal = signum
        os.write(2, ('\n%s: saving a snapshot at the end of this iteration, '
                     'then stopping (send it again to stop at once)\n'
                     % signal.Signals(signum).name).encode())

    def on_error(self, trainer, exc, tb):
        pass          # never snapshot a failed iteration

    def finalize(self):
        self._restore_handlers()
        self._inner.finalize()

    # -- state saved with the trainer ----------------------------------------
    def serialize(self, serializer):
        s, p = serializer['numpy_random'], serializer['python_random']
        if isinstance(serializer, chainer.serializer.Serializer):
            _, keys, pos, has_gauss, cached = np.random.get_state()
            s('keys', keys)
            s('pos', np.int64(pos))
            s('has_gauss', np.int64(has_gauss))
            s('cached_gaussian', np.float64(cached))
            version, internal, gauss = random.getstate()
            p('version', np.int64(version))
            p('internal', np.array(internal, dtype=np.int64))
            p('gauss', np.float64(np.nan if gauss is None else gauss))
        else:
            np.random.set_state((
                'MT19937', np.asarray(s('keys', None), dtype=np.uint32),
                int(s('pos', None)), int(s('has_gauss', None)),
                float(s('cached_gaussian', None))))
            gauss = float(p('gauss', None))
            random.setstate((int(p('version', None)),
                             tuple(int(v) for v in p('internal', None)),
                             None if np.isnan(gauss) else gauss))
