"""The ``--out`` of a tool: claimed before the work, owned by one tool,
written only inside (see :mod:`runtime.files`), an old run replaced only
once there is something to replace it with.

* :func:`claim` checks ``--out`` before any work: not a file; not, inside
  or around an input of the run; no link nor entry of the wrong kind under
  a name the tool writes; not another tool's (the script its config.json
  names, see :func:`write_config`), with or without ``--force``. It then
  creates ``--out``, locks it (``filelock`` on ``OUT/.lock``: a second run
  on it is refused naming the first one's pid; the kernel releases the
  lock when a process ends, also after kill -9) and removes the
  temporaries of writes killed half way, which no live run owns.
* Each kind of run (:class:`Kind`) names the entries it writes at the top
  of ``--out`` and its product, what makes a run worth keeping.
  :meth:`Claim.start_over` (``--force``) moves those entries aside into
  ``OUT/.replaced``; they are deleted once the new run ends well or has a
  product, and put back when it fails before that (by the next claim
  after a kill -9).
* A failed run that created ``--out``, or started over in it, removes what
  it wrote unless it has a product, and ``--out`` itself if it created it
  and left it empty.
* A pseudo-label dataset lists what it wrote in ``OUT/manifest.txt``
  (written before the labels); its ``--force`` replaces only such an
  ``--out``, and refuses one holding files of its names it did not write.
"""
import collections
import json
import os
import platform
import re
import shutil
import subprocess
import sys

import filelock

from runtime.errors import OutputError
from runtime.files import (TEMPORARY, atomic_write, check_entry, output_path,
                           read_text)

LOCK = '.lock'
STAGING = '.replaced'
CONFIG = 'config.json'
MANIFEST = 'manifest.txt'


class Kind(collections.namedtuple('Kind', 'own product dirs')):
    """What a kind of run writes at the top of ``--out``: ``own`` (a
    pattern of names), ``product`` (a pattern, or None) and which of them
    are directories."""


def names(*files, dirs=(), product=None):
    """A :class:`Kind` writing exactly ``files`` and ``dirs``."""
    pattern = '|'.join(map(re.escape, files + tuple(dirs) + (CONFIG,)))
    return Kind(re.compile('^(%s)$' % pattern), product, tuple(dirs))


TRAINING = Kind(re.compile(
    r'^(model\.npz|model_best\.npz|snapshot_iter_\d+\.npz|config\.json|log|'
    r'ext_images\.txt|attention|tensorboard|\w+\.png)$'),
    re.compile(r'^(model\.npz|snapshot_iter_\d+\.npz)$'),
    ('attention', 'tensorboard'))
DATASET = names('pseudo_labels.json', 'class_names.txt', MANIFEST,
                'preview.png',
                dirs=('JPEGImages', 'SegmentationClass', 'ImageSets'),
                product=re.compile(r'^pseudo_labels\.json$'))


def _entries(out, pattern):
    return sorted(n for n in os.listdir(out) if pattern.match(n))


def _tool():
    return os.path.basename(sys.argv[0])


def owner(out):
    """The script that wrote ``out/config.json`` (None without a readable
    one); OutputError for a link, FIFO, device or oversized file there."""
    path = os.path.join(out, CONFIG)
    if not check_entry(path):
        return None
    text = read_text(path, 'config', error=OutputError)
    try:
        return str(json.loads(text).get('command', '')).split(' ')[0] or None
    except (ValueError, AttributeError):
        return None


def _check_inputs(out, inputs):
    """OutputError if ``out`` is, holds or lies inside an input directory,
    or holds an input file; ``inputs``: ``[(flag, path, 'dir' or
    'file')]`` (None paths skipped)."""
    root = os.path.realpath(out)
    for flag, path, kind in inputs:
        if not path:
            continue
        real = os.path.realpath(path)
        if real == root:
            problem = 'is the input %s %s'
        elif real.startswith(os.path.join(root, '')):
            problem = 'holds the input %s %s'
        elif kind == 'dir' and root.startswith(os.path.join(real, '')):
            problem = 'lies inside the input %s %s'
        else:
            continue
        raise OutputError('--out %s %s; pick another --out'
                          % (out, problem % (flag, path)))


def _write_pid(fd):
    os.ftruncate(fd, 0)
    os.pwrite(fd, b'%d\n' % os.getpid(), 0)


class Claim(object):
    """An ``--out`` in use by this process (see the module docstring)."""

    def __init__(self, out, kind):
        self.out, self.kind = out, kind
        self.created = []        # the directories made for it, deepest last
        self.started = False
        self.lock = None

    def has_product(self):
        return bool(self.kind.product and _entries(self.out,
                                                   self.kind.product))

    def _check(self):
        """Refuse a file as ``--out``, a link or an entry of the wrong kind
        under a name the tool writes, and another tool's ``--out``."""
        if not os.path.isdir(self.out):
            if os.path.exists(self.out):
                raise OutputError('--out %s is a file, not a directory'
                                  % self.out)
            return
        for name in sorted(os.listdir(self.out)):
            if name in (LOCK, STAGING) or self.kind.own.match(name):
                check_entry(os.path.join(self.out, name),
                            name in self.kind.dirs + (STAGING,))
        if self.kind is not TRAINING:
            found = _entries(self.out, TRAINING.product)
            if found:
                raise OutputError('--out %s holds a training run (%s); pick '
                                  'another --out' % (self.out, found[0]))
        script = owner(self.out)
        if script not in (None, _tool()):
            raise OutputError('--out %s holds the config.json of a %s run; '
                              '%s never replaces another tool\'s files: '
                              'pick another --out' % (self.out, script,
                                                      _tool()))

    def _create(self):
        path = os.path.abspath(self.out)
        while not os.path.exists(path):
            self.created.insert(0, path)
            path = os.path.dirname(path)
        try:
            os.makedirs(self.out, exist_ok=True)
        except OSError as e:
            raise OutputError('--out %s: %s' % (self.out, e.strerror or e))

    def _lock(self):
        path = os.path.join(self.out, LOCK)
        lock = filelock.FileLock(path, blocking=False, on_acquired=_write_pid)
        try:
            lock.acquire()
        except filelock.Timeout:
            holder = read_text(path, 'config', error=OutputError).strip()
            raise OutputError('--out %s is in use by another run%s; wait for '
                              'it to end or pick another --out' % (
                                  self.out, ' (pid %s)' % holder[:20]
                                  if holder else ''))
        except OSError as e:
            check_entry(path)        # a link or a FIFO planted meanwhile
            raise OutputError('--out %s is not writable (%s)'
                              % (self.out, e.strerror or e))
        self.lock = lock

    def _remove_temporaries(self):
        """The temporaries of writes killed half way, at the top of
        ``--out`` and anywhere in the directories the tool writes."""
        tops = [os.path.join(self.out, d) for d in self.kind.dirs]
        for d, _, files in [next(os.walk(self.out))] + [
                w for top in tops for w in os.walk(top)]:
            for name in files:
                path = os.path.join(d, name)
                if TEMPORARY.match(name) and not os.path.islink(path):
                    os.remove(path)

    def start_over(self):
        """Move the old run's entries aside (deleted once the new run has
        a product, put back if it fails before)."""
        found = _entries(self.out, self.kind.own)
        if found:
            staging = output_path(self.out, STAGING, directory=True)
            for name in found:
                os.replace(os.path.join(self.out, name),
                           os.path.join(staging, name))
        self.started = True

    def _settle(self, keep_new):
        """Delete the staged old run (``keep_new``), or delete the new
        run's entries and put the old ones back."""
        staging = os.path.join(self.out, STAGING)
        if keep_new:
            if check_entry(staging, directory=True):
                shutil.rmtree(staging)
            return
        for name in _entries(self.out, self.kind.own):
            path = os.path.join(self.out, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        if check_entry(staging, directory=True):
            for name in os.listdir(staging):
                os.replace(os.path.join(staging, name),
                           os.path.join(self.out, name))
            os.rmdir(staging)

    def release(self, ok):
        """End of the run; ``ok``: it ended well."""
        try:
            if self.started or self.created:
                self._settle(ok or self.has_product())
            if self.lock is not None:
                os.remove(os.path.join(self.out, LOCK))
            for path in reversed(self.created if not ok else []):
                if os.listdir(path):
                    break
                os.rmdir(path)
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None


_claims = []


def claim(out, kind, inputs=()):
    """Claim ``--out`` for a run of ``kind`` (see the module docstring);
    ``inputs``: ``[(flag, path, 'dir' or 'file')]``."""
    _check_inputs(out, inputs)
    new = Claim(out, kind)
    new._check()
    new._create()
    _claims.append(new)
    new._lock()
    new._remove_temporaries()
    if check_entry(os.path.join(out, STAGING), True):
        new._settle(new.has_product())      # after a killed --force
    return new


def claim_training(out, force=False, resume=None, modelfile=None):
    """:func:`claim` of a training run; a finished run (model.npz) is
    refused unless ``force`` or ``resume``, and so is an ``--out`` that
    holds ``modelfile``."""
    new = claim(out, TRAINING, [('--modelfile', modelfile, 'file')])
    if os.path.exists(os.path.join(out, 'model.npz')) and not force and \
            resume is None:
        raise OutputError('--out %s already holds a finished run (model.npz);'
                          ' pass --force to replace it or --resume to '
                          'continue it' % out)
    return new


def _files_under(out, entries):
    """Relative paths of the files and links under ``entries`` of ``out``
    (links not followed)."""
    found = []
    for name in entries:
        path = os.path.join(out, name)
        if os.path.islink(path) or not os.path.isdir(path):
            found.append(name)
            continue
        for d, dirs, files in os.walk(path):
            found += [os.path.relpath(os.path.join(d, n), out) for n in
                      files + [n for n in dirs
                               if os.path.islink(os.path.join(d, n))]]
    return sorted(found)


def _summary(files):
    """``JPEGImages/ (40 files), config.json, ...`` of relative paths."""
    groups = {}
    for path in files:
        groups.setdefault(path.split(os.sep)[0], []).append(path)
    return ', '.join(paths[0] if len(paths) == 1 else
                     '%s/ (%d files)' % (top, len(paths))
                     for top, paths in sorted(groups.items()))


def write_manifest(out, paths):
    """List ``paths`` (relative to ``out``), and the manifest itself, in
    ``out/manifest.txt``: what a later ``--force`` may replace."""
    with atomic_write(output_path(out, MANIFEST)) as f:
        f.write(''.join(p + '\n' for p in sorted(set(paths) | {MANIFEST})))


def claim_dataset(out, force=False, inputs=()):
    """:func:`claim` of a generated dataset (pseudo labels): a non-empty
    ``--out`` is refused unless ``force``, which replaces what this tool
    wrote there (:data:`MANIFEST`); files of its names that it did not
    write are refused."""
    new = claim(out, DATASET, inputs)
    present = sorted(set(os.listdir(out)) - {LOCK, STAGING})
    if not present:
        return new
    files = _files_under(out, _entries(out, DATASET.own))
    path = os.path.join(out, MANIFEST)
    listed = set(read_text(path, 'list', error=OutputError).splitlines()
                 if check_entry(path) else ())
    foreign = [f for f in files if f not in listed]
    if foreign:
        raise OutputError(
            '--out %s holds %s%s, which %s did not write (not listed in %s); '
            'it never deletes such files: pick another --out'
            % (out, os.path.join(out, foreign[0]), ' and %d more' % (
                len(foreign) - 1) if len(foreign) > 1 else '', _tool(), path))
    if not force:
        raise OutputError(
            '--out %s is not empty; --force would delete %s' % (out, (
                'what %s wrote there: %s' % (_tool(), _summary(files)))
                if files else 'nothing (the labels go beside %s)'
                % ', '.join(present)))
    new.start_over()
    return new


def claimed(out):
    """The claim of ``out`` by this process, or None."""
    return next((c for c in _claims if c.out == out), None)


def release_all(ok):
    """Release every claim of this process (see :meth:`Claim.release`);
    ``ok``: the run ended well."""
    while _claims:
        done = _claims.pop()
        try:
            done.release(ok)
        except OSError as e:
            print('warning: --out %s: %s' % (done.out, e), file=sys.stderr)


def write_config(out, args, **extra):
    """Write the run's full configuration, ``vars(args)`` with ``extra``,
    the command line and the versions, to ``out/config.json``; returns
    it."""
    import chainer
    import numpy as np
    config = dict(vars(args), **extra)
    config['command'] = ' '.join([_tool()] + sys.argv[1:])
    config['versions'] = dict(python=platform.python_version(),
                              chainer=chainer.__version__,
                              numpy=np.__version__)
    try:
        config['git_commit'] = subprocess.run(
            ['git', 'rev-parse', 'HEAD'], capture_output=True, text=True,
            cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        pass
    with atomic_write(output_path(out, CONFIG)) as f:
        json.dump(config, f, indent=2, sort_keys=True, default=str)
    return json.loads(json.dumps(config, default=str))
