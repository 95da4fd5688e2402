"""The one way to write a file (:func:`atomic_write` into the directories
:func:`output_path` made: never through a planted link) and the one way
to read one (:func:`open_input`: regular files only, never a hang on a
FIFO, each kind under a size cap)."""
import contextlib
import io
import json
import os
import re
import secrets
import stat

import numpy as np

from runtime.errors import OutputError, UsageError, one_line

#: What a write killed half way leaves (the next claim of --out removes it).
TEMPORARY = re.compile(r'^\.tmp-.+-[0-9a-f]{8}$')

#: The largest file read of each kind, in bytes.
LIMITS = dict(config=64 << 20, list=256 << 20, annotation=1 << 20,
              image=512 << 20, model=16 << 30, snapshot=64 << 30,
              records=4 << 30)


def file_kind(mode):
    """An ``st_mode`` that is not a regular file's, in words."""
    return next((name for test, name in (
        (stat.S_ISDIR, 'a directory'), (stat.S_ISFIFO, 'a FIFO'),
        (stat.S_ISSOCK, 'a socket'), (stat.S_ISCHR, 'a device'),
        (stat.S_ISBLK, 'a device')) if test(mode)), 'a special file')


class _WriteTarget(object):
    """The file :func:`atomic_write` yields; after a failed write it
    writes to a discarded buffer, as numpy's ``savez`` leaves its ZipFile
    open on a full disk, whose ``__del__`` would print "Exception ignored
    ... seek of closed file" after the one-line error."""

    def __init__(self, f):
        self._file = f

    def discard(self):
        self._file = io.BytesIO() if 'b' in self._file.mode else io.StringIO()

    def __getattr__(self, name):
        return getattr(self._file, name)


def temporary(path):
    """A new name ``.tmp-<name>-XXXXXXXX`` beside ``path``."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, '.tmp-%s-%s' % (name[:200],
                                                   secrets.token_hex(4)))


@contextlib.contextmanager
def atomic_write(path, mode='w', sync=False):
    """Yield a new :func:`temporary` file (``O_CREAT | O_EXCL |
    O_NOFOLLOW``, the umask applies), renamed onto ``path`` once written
    (``sync``: on the disk first); on an error removed, ``path`` left as
    it was and named by an OSError without a file name (a full disk)."""
    tmp = temporary(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                 os.O_CLOEXEC, 0o666)
    target = None
    try:
        with os.fdopen(fd, mode) as f:
            target = _WriteTarget(f)
            yield target
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if target is not None:
            target.discard()
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(e, OSError) and not e.filename:
            e.filename = path
        raise


def write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path) as f:
        f.write(text)


def check_entry(path, directory=False):
    """Whether ``path`` exists (a link not followed); OutputError if it is
    a link, or not a directory (``directory``) or a regular file."""
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
    """``out/names...``, its parents (and itself with ``directory``) made
    and each entry checked (:func:`check_entry`); OutputError outside
    ``out``."""
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


def open_input(path, kind, flag=None, error=UsageError):
    """The regular file ``path`` open for reading in binary (``O_NONBLOCK``:
    a FIFO never waits); ``error`` naming it (and ``flag``) if it is
    missing, unreadable, not a regular file or over ``LIMITS[kind]``."""
    where = '%s %s' % (flag, path) if flag else path
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error('%s: no such file' % where)
    except OSError as e:
        raise error('%s: unreadable (%s)' % (where, e.strerror or e))
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = '%s, not a regular file' % file_kind(info.st_mode)
    elif info.st_size > LIMITS[kind]:
        problem = '%d bytes, more than the %d read for a %s file' % (
            info.st_size, LIMITS[kind], kind)
    if problem:
        os.close(fd)
        raise error('%s: %s' % (where, problem))
    return os.fdopen(fd, 'rb')


def read_text(path, kind, flag=None, error=UsageError):
    """The UTF-8 text of :func:`open_input` (a byte order mark dropped)."""
    with open_input(path, kind, flag, error) as f:
        data = f.read(LIMITS[kind] + 1)
    try:
        return data.decode('utf-8-sig')
    except UnicodeDecodeError as e:
        raise error('%s: not UTF-8 text (%s)' % (path, one_line(e)))


def read_json(path, flag=None, error=UsageError):
    """The JSON value of a ``config`` file."""
    text = read_text(path, 'config', flag, error)
    try:
        return json.loads(text)
    except ValueError as e:
        raise error('%s: not JSON (%s)' % ('%s %s' % (flag, path) if flag
                                           else path, one_line(e)))


def read_npz(path, kind, error, what):
    """Every array of the npz file ``path`` (:func:`open_input`), read
    without pickle (files are data, never code); ``error`` naming the file
    for anything else (``what`` it is not)."""
    with open_input(path, kind, error=error) as f:
        magic = f.read(6)
        if not magic.startswith(b'PK\x03\x04'):
            raise error('%s: not %s (%s)' % (path, what, 'empty' if not magic
                        else 'a single array, not an npz archive'
                        if magic.startswith(b'\x93NUMPY')
                        else 'not an npz archive'))
        f.seek(0)
        arrays, key = {}, None
        try:
            with np.load(f, allow_pickle=False) as z:
                for key in z.files:
                    arrays[key] = z[key]
        except Exception as e:  # zipfile, zlib and numpy errors alike
            if isinstance(e, ValueError) and 'allow_pickle' in str(e):
                raise error('%s: unsafe: it holds pickled data (object array '
                            '%s), which is never loaded' % (path, key))
            raise error('%s: not %s (a truncated or damaged npz archive, '
                        '%s: %s)' % (path, what, type(e).__name__,
                                     one_line(e)))
    return arrays
