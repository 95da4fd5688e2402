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
  would leave it.
"""
import errno
import fcntl
import json
import os
import re
import shutil
import sys
import tempfile

from runtime.errors import OutputError

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
DATASET_FILES = re.compile(r'^(JPEGImages|SegmentationClass|ImageSets|'
                           r'config\.json|pseudo_labels\.json)$')
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


def output_path(out, *names):
    """``out/names...`` with its parent directories made; OutputError if
    it would lie outside ``out`` (an absolute name, ``..``, a symlink
    leading out)."""
    path = os.path.normpath(os.path.join(out, *names))
    real = os.path.join(os.path.realpath(os.path.dirname(path)),
                        os.path.basename(path))
    if not real.startswith(os.path.join(os.path.realpath(out), '')):
        raise OutputError('%s: would be written outside --out %s'
                          % (os.path.join(*names), out))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def _inside(path, out):
    real = os.path.realpath(path)
    root = os.path.realpath(out)
    return real == root or real.startswith(os.path.join(root, ''))


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

    def __init__(self, out, own=None, product=None):
        self.out = out
        self.own, self.product = own, product
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
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as e:
                raise OutputError('--out %s is not writable (%s)'
                                  % (self.out, e.strerror or e))
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
            staging = os.path.join(self.out, STAGING)
            os.makedirs(staging, exist_ok=True)
            for name in names:
                os.replace(os.path.join(self.out, name),
                           os.path.join(staging, name))
        self.started = True

    def _settle(self, keep_new):
        """Delete the staged old run (``keep_new``), or delete the new
        run's entries and put the old ones back."""
        staging = os.path.join(self.out, STAGING)
        if keep_new:
            if os.path.isdir(staging):
                shutil.rmtree(staging)
            return
        for name in _entries(self.out, self.own):
            _remove(os.path.join(self.out, name))
        if os.path.isdir(staging):
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
    for name, path in inputs:
        if path and os.path.exists(claim.out) and _inside(path, claim.out):
            raise OutputError('--out %s holds the input %s %s; pick another '
                              '--out' % (claim.out, name, path))
    claim._create()
    _claims.append(claim)
    if lock:
        claim._lock()
    else:
        claim._check_writable()
    if claim.own and os.path.isdir(os.path.join(claim.out, STAGING)):
        claim._settle(claim.has_product())      # after a killed --force
    return claim


def claim_training(out, force=False, resume=None, modelfile=None):
    """Claim the ``--out`` of a training run: locked, stale temporaries
    removed; a finished run (model.npz) is refused unless ``force`` or
    ``resume``, and so is an ``--out`` that holds ``modelfile``."""
    claim = _claim(Claim(out, TRAINING_FILES, TRAINING_PRODUCT), lock=True,
                   inputs=[('--modelfile', modelfile)])
    if os.path.exists(os.path.join(out, MODEL)) and not force and \
            resume is None:
        raise OutputError('--out %s already holds a finished run (%s); pass '
                          '--force to replace it or --resume to continue '
                          'it' % (out, MODEL))
    claim._remove_stale()
    return claim


def claim_dataset(out, force=False, inputs=()):
    """Claim the ``--out`` of a generated dataset (pseudo labels): locked;
    a non-empty one is refused unless ``force``, which replaces the
    entries this tool writes; a training run and an ``--out`` holding an
    input (``[(flag, path)]``) are refused."""
    claim = _claim(Claim(out, DATASET_FILES, DATASET_PRODUCT), lock=True,
                   inputs=inputs)
    other = _training_run(out)
    if other:
        raise OutputError('--out %s holds %s; pick another --out'
                          % (out, other))
    if set(os.listdir(out)) - {LOCK, STAGING} and not force:
        raise OutputError('--out %s is not empty; pass --force to replace '
                          'what %s writes there' % (out, _tool()))
    if force:
        claim.start_over()
    return claim


def claim_report(out, writes_config=False):
    """Claim the ``--out`` of evaluate.py or visualize.py: created and
    writable; refused if it holds a training run or, for a tool that
    ``writes_config``, the config.json of another tool."""
    claim = Claim(out)
    if os.path.isdir(out):
        command = writes_config and _config_command(out)
        other = _training_run(out) or (
            command and command != _tool() and 'the config.json of a %s run'
            % command)
        if other:
            raise OutputError('--out %s holds %s; pick another --out'
                              % (out, other))
    return _claim(claim, lock=False)


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
