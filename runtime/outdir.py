"""The output directory (``--out``) of a tool: claimed before the work,
written only inside, an old run replaced only once there is something to
replace it with.

* :func:`claim_training`, :func:`claim_dataset` and :func:`claim_report`
  check ``--out`` before any work (not a file, writable, not holding an
  input of the run, not another tool's run) and create it.
* Training and pseudo-label runs hold an OS-level lock on ``OUT/.lock``
  (``fcntl.flock``) while they live: a second run on the same ``--out`` is
  refused; the kernel releases the lock when the process ends, also after
  kill -9.
* A training claim removes the temporaries of a write killed half way
  (:data:`_STALE`, this toolkit's and chainer's naming only); the lock
  guarantees that no live run owns them.
* :meth:`Claim.start_over` (``--force``) moves the old run's entries (the
  tool's own names only) aside into ``OUT/.replaced``. They are deleted
  when the new run ends well or has a product (a snapshot, model.npz,
  pseudo_labels.json); they are put back when it fails before that, and
  the next claim after a kill -9 takes the same decision.
* A failed run that created ``--out``, or started over in it, removes what
  it wrote unless it has a product, and ``--out`` itself if it created it
  and left it empty.
* :func:`output_path` joins a name under ``--out`` and refuses one that
  would leave it; every writer of a fixed name or a per-image file in
  ``--out`` goes through it. Nothing here follows a symbolic link planted
  in ``--out``: an entry the tool would write (``.lock``, ``.replaced``,
  ``log``, ``attention``, config.json, model.npz, snapshots, pictures,
  label folders...) that is a symbolic link, or a directory where a file
  belongs (or the reverse), is refused in one line naming it, at the
  claim and again when written. ``--out`` itself may be a link.
* Reports and datasets never go into what the tool reads: an ``--out``
  that is, holds or lies inside an input directory (``--images``, the
  dataset), or holds an input file, is refused.
* A pseudo-label dataset lists what it wrote in ``OUT/manifest.txt``
  (written before the labels); ``--force`` replaces only such an
  ``--out``, and refuses one holding files of its names that it did not
  write (a real dataset's folders).
"""
import errno
import fcntl
import json
import os
import re
import shutil
import stat
import sys
import tempfile

from runtime.errors import OutputError
from runtime.files import atomic_write, file_kind

LOCK = '.lock'
STAGING = '.replaced'
MODEL = 'model.npz'
_SNAPSHOT = r'snapshot_iter_\d+\.npz'

# Top-level entries of a run, by kind: what --force replaces; the product
# that makes a run worth keeping.
TRAINING_FILES = re.compile(
    r'^(%s|%s|model_best\.npz|config\.json|log|ext_images\.txt|'
    r'attention|tensorboard|(loss|accuracy)\w*\.png)$'
    % (re.escape(MODEL), _SNAPSHOT))
TRAINING_PRODUCT = re.compile(r'^(%s|%s)$' % (re.escape(MODEL), _SNAPSHOT))
TRAINING_DIRS = ('attention', 'tensorboard')
MANIFEST = 'manifest.txt'
DATASET_FILES = re.compile(r'^(JPEGImages|SegmentationClass|ImageSets|'
                           r'config\.json|pseudo_labels\.json|'
                           r'class_names\.txt|%s)$' % re.escape(MANIFEST))
DATASET_DIRS = ('JPEGImages', 'SegmentationClass', 'ImageSets')
DATASET_PRODUCT = re.compile(r'^pseudo_labels\.json$')

# Temporaries of a killed write: ``(name, allowed content)``; a directory
# is removed only if it holds nothing but that content. chainer's snapshot
# writer and LogReport write into a mkdtemp directory and rename;
# runtime.files.atomic_write into a mkstemp file (config.json.tmp: the
# name of older versions).
_STALE = [(re.compile(r'^tmp(%s)\w{8}$' % _SNAPSHOT), r'\1'),
          (re.compile(r'^log\w{8}$'), 'log.json'),
          (re.compile(r'^tmp\w{8}(\.\w+)?\.tmp$'), None),
          (re.compile(r'^config\.json\.tmp$'), None)]


def check_entry(path, directory=False):
    """Whether ``path`` exists, never following a symbolic link;
    OutputError naming it if it is a link, or not a directory
    (``directory``) or not a regular file."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(mode):
        raise OutputError('%s is a symbolic link; refusing to write through '
                          'it: remove it or pick another --out' % path)
    if directory and not stat.S_ISDIR(mode):
        raise OutputError('%s is a file where this tool writes a directory; '
                          'remove it or pick another --out' % path)
    if not directory and not stat.S_ISREG(mode):
        raise OutputError('%s is %s where this tool writes a file; remove it '
                          'or pick another --out' % (path, file_kind(mode)))
    return True


def output_path(out, *names, directory=False):
    """``out/names...`` with its parent directories made, checked entry by
    entry without following a symbolic link (:func:`check_entry`);
    ``directory``: the path is a directory, made too. OutputError if it
    would lie outside ``out`` (an absolute name, ``..``)."""
    root = os.path.normpath(out)
    path = os.path.normpath(os.path.join(out, *names))
    parts = os.path.relpath(path, root).split(os.sep)
    if os.path.isabs(os.path.join(*names)) or parts[0] in ('.', '..'):
        raise OutputError('%s: would be written outside --out %s'
                          % (os.path.join(*names), out))
    current = root
    for k, part in enumerate(parts):
        current = os.path.join(current, part)
        is_dir = directory or k < len(parts) - 1
        if not check_entry(current, is_dir) and is_dir:
            try:
                os.mkdir(current)
            except FileExistsError:     # made meanwhile: check it again
                check_entry(current, True)
    return path


def _within(path, root):
    """Whether real path ``path`` is ``root`` or lies inside it."""
    return path == root or path.startswith(os.path.join(root, ''))


def _check_inputs(out, inputs):
    """OutputError if ``out`` is, holds or lies inside an input directory,
    or holds an input file (its directory included); ``inputs``:
    ``[(flag, path, 'dir' or 'file')]`` (None paths skipped)."""
    root = os.path.realpath(out)
    for flag, path, kind in inputs:
        if not path:
            continue
        real = os.path.realpath(path)
        if real == root:
            problem = 'is the input %s %s'
        elif _within(real, root):
            problem = 'holds the input %s %s'
        elif kind == 'dir' and _within(root, real):
            problem = 'lies inside the input %s %s'
        else:
            continue
        raise OutputError('--out %s %s; pick another --out'
                          % (out, problem % (flag, path)))


def _entries(out, pattern):
    return sorted(n for n in os.listdir(out) if pattern.match(n))


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def _config_command(out):
    """The script named by ``out/config.json`` (None without one)."""
    try:
        with open(os.path.join(out, 'config.json')) as f:
            return str(json.load(f).get('command', '')).split(' ')[0]
    except (OSError, ValueError, AttributeError):
        return None


def _tool():
    return os.path.basename(sys.argv[0])


def _training_run(out):
    """A phrase naming the training run ``out`` holds, or None."""
    found = _entries(out, TRAINING_PRODUCT)
    return 'a training run (%s)' % found[0] if found else None


class Claim(object):
    """An ``--out`` in use by this process (see the module docstring)."""

    def __init__(self, out, own=None, product=None, writes=None, dirs=()):
        self.out = out
        self.own, self.product = own, product
        self.writes, self.dirs = writes or own, dirs
        self.created = []        # the directories made for it, deepest last
        self.started = False
        self.fd = None

    def has_product(self):
        return bool(self.product and _entries(self.out, self.product))

    def _create(self):
        if os.path.exists(self.out) and not os.path.isdir(self.out):
            raise OutputError('--out %s is a file, not a directory'
                              % self.out)
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
        for _ in range(3):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW |
                             os.O_NONBLOCK, 0o666)
            except OSError as e:
                check_entry(path)       # a link or a FIFO planted there
                raise OutputError('--out %s is not writable (%s)'
                                  % (self.out, e.strerror or e))
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                check_entry(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = os.read(fd, 32).decode('ascii', 'replace').strip()
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    raise OutputError(
                        '--out %s is in use by another run%s; wait for it '
                        'to end or pick another --out'
                        % (self.out, ' (pid %s)' % holder if holder else ''))
                raise OutputError('--out %s: cannot lock %s (%s)'
                                  % (self.out, path, e.strerror or e))
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, b'%d\n' % os.getpid())
                self.fd = fd
                return
            os.close(fd)   # its holder removed it meanwhile: lock the new one
        raise OutputError('--out %s: cannot take its lock %s'
                          % (self.out, path))

    def _check_entries(self):
        """Refuse (:func:`check_entry`) a link or an entry of the wrong
        kind under a name this claim writes."""
        for name in sorted(os.listdir(self.out)):
            if name in (LOCK, STAGING) or (self.writes and
                                           self.writes.match(name)):
                check_entry(os.path.join(self.out, name),
                            name in self.dirs or name == STAGING)

    def _check_writable(self):
        try:
            with tempfile.TemporaryFile(dir=self.out):
                pass
        except OSError as e:
            raise OutputError('--out %s is not writable (%s)'
                              % (self.out, e.strerror or e))

    def _remove_stale(self):
        for name in os.listdir(self.out):
            for pattern, content in _STALE:
                m = pattern.match(name)
                path = os.path.join(self.out, name)
                if not m or os.path.islink(path):
                    continue
                if content is None:
                    if os.path.isfile(path):
                        os.remove(path)
                elif os.path.isdir(path) and set(os.listdir(path)) <= {
                        m.expand(content)}:
                    shutil.rmtree(path)

    def start_over(self):
        """Move the old run's entries aside (deleted once the new run has
        a product, put back if it fails before)."""
        names = _entries(self.out, self.own)
        if names:
            staging = output_path(self.out, STAGING, directory=True)
            for name in names:
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
        for name in _entries(self.out, self.own):
            _remove(os.path.join(self.out, name))
        if check_entry(staging, directory=True):
            for name in os.listdir(staging):
                os.replace(os.path.join(staging, name),
                           os.path.join(self.out, name))
            os.rmdir(staging)

    def release(self, ok):
        """End of the run; ``ok``: it ended well."""
        try:
            if self.own and (self.started or self.created):
                self._settle(ok or self.has_product())
            if self.fd is not None:
                os.remove(os.path.join(self.out, LOCK))
            for path in reversed(self.created if not ok else []):
                if os.listdir(path):
                    break
                os.rmdir(path)
        finally:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


_claims = []


def _claim(claim, lock, inputs=()):
    _check_inputs(claim.out, [i if len(i) == 3 else i + ('file',)
                              for i in inputs])
    claim._create()
    _claims.append(claim)
    claim._check_entries()
    if lock:
        claim._lock()
    else:
        claim._check_writable()
    if claim.own and check_entry(os.path.join(claim.out, STAGING), True):
        claim._settle(claim.has_product())      # after a killed --force
    return claim


def claim_training(out, force=False, resume=None, modelfile=None):
    """Claim the ``--out`` of a training run: locked, stale temporaries
    removed; a finished run (model.npz) is refused unless ``force`` or
    ``resume``, and so is an ``--out`` that holds ``modelfile``."""
    claim = _claim(Claim(out, TRAINING_FILES, TRAINING_PRODUCT,
                         dirs=TRAINING_DIRS), lock=True,
                   inputs=[('--modelfile', modelfile)])
    if os.path.exists(os.path.join(out, MODEL)) and not force and \
            resume is None:
        raise OutputError('--out %s already holds a finished run (%s); pass '
                          '--force to replace it or --resume to continue '
                          'it' % (out, MODEL))
    claim._remove_stale()
    return claim


def _files_under(out, names):
    """Relative paths of the files and links under the entries ``names``
    of ``out`` (links not followed)."""
    found = []
    for name in names:
        path = os.path.join(out, name)
        if os.path.islink(path) or not os.path.isdir(path):
            found.append(name)
            continue
        for d, dirs, files in os.walk(path):
            found += [os.path.relpath(os.path.join(d, n), out) for n in
                      files + [n for n in dirs
                               if os.path.islink(os.path.join(d, n))]]
    return sorted(found)


def _listed(out):
    """The paths ``out/manifest.txt`` lists (empty without one)."""
    try:
        with open(os.path.join(out, MANIFEST), encoding='utf-8') as f:
            return set(f.read().splitlines())
    except (OSError, UnicodeDecodeError):
        return set()


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
    """Claim the ``--out`` of a generated dataset (pseudo labels): locked;
    a non-empty one is refused unless ``force``, which replaces what this
    tool wrote there (:data:`MANIFEST`); files of its names that it did
    not write, a training run and an ``--out`` that is, holds or lies
    inside an input (``[(flag, path, 'dir' or 'file')]``) are refused."""
    claim = _claim(Claim(out, DATASET_FILES, DATASET_PRODUCT,
                         dirs=DATASET_DIRS), lock=True, inputs=inputs)
    other = _training_run(out)
    if other:
        raise OutputError('--out %s holds %s; pick another --out'
                          % (out, other))
    present = sorted(set(os.listdir(out)) - {LOCK, STAGING})
    if not present:
        return claim
    files = _files_under(out, _entries(out, DATASET_FILES))
    listed = _listed(out)
    foreign = [f for f in files if f not in listed]
    if foreign:
        raise OutputError(
            '--out %s holds %s%s, which %s did not write (not listed in %s); '
            'it never deletes such files: pick another --out'
            % (out, os.path.join(out, foreign[0]), ' and %d more' % (
                len(foreign) - 1) if len(foreign) > 1 else '', _tool(),
               os.path.join(out, MANIFEST)))
    if not force:
        raise OutputError(
            '--out %s is not empty; --force would delete %s' % (out, (
                'what %s wrote there: %s' % (_tool(), _summary(files)))
                if files else 'nothing (the labels go beside %s)'
                % ', '.join(present)))
    claim.start_over()
    return claim


def claim_report(out, writes_config=False, inputs=(), files=(), dirs=()):
    """Claim the ``--out`` of evaluate.py or visualize.py: created and
    writable, its fixed ``files`` and ``dirs`` checked; refused if it
    holds a training run or, for a tool that ``writes_config``, the
    config.json of another tool, or if it is, holds or lies inside an
    input (see :func:`claim_dataset`)."""
    names = tuple(files) + tuple(dirs)
    claim = Claim(out, writes=re.compile(
        '^(%s)$' % '|'.join(map(re.escape, names))) if names else None,
        dirs=tuple(dirs))
    if os.path.isdir(out):
        command = writes_config and _config_command(out)
        other = _training_run(out) or (
            command and command != _tool() and 'the config.json of a %s run'
            % command)
        if other:
            raise OutputError('--out %s holds %s; pick another --out'
                              % (out, other))
    return _claim(claim, lock=False, inputs=inputs)


def claimed(out):
    """The claim of ``out`` by this process, or None."""
    for claim in _claims:
        if claim.out == out:
            return claim
    return None


def release_all(ok):
    """Release every claim of this process (see :meth:`Claim.release`);
    ``ok``: the run ended well."""
    while _claims:
        claim = _claims.pop()
        try:
            claim.release(ok)
        except OSError as e:
            print('warning: --out %s: %s' % (claim.out, e), file=sys.stderr)
