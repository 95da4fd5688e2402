"""Atomic writes: a file appears whole under its name or not at all; and
a lock held by one process at a time."""
import contextlib
import fcntl
import io
import os
import stat
import tempfile


def file_kind(mode):
    """What an ``st_mode`` that is not a regular file's is, in words."""
    for test, name in ((stat.S_ISDIR, 'a directory'), (stat.S_ISLNK,
                       'a symbolic link'), (stat.S_ISFIFO, 'a FIFO'),
                       (stat.S_ISSOCK, 'a socket'), (stat.S_ISCHR, 'a device'),
                       (stat.S_ISBLK, 'a device')):
        if test(mode):
            return name
    return 'a regular file' if stat.S_ISREG(mode) else 'a special file'


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _WriteTarget(object):
    """The file that :func:`atomic_write` yields. Once the write has
    failed, what is written later goes to a discarded buffer: numpy's
    ``savez`` leaves its ZipFile open when a write fails (a full disk),
    and that ZipFile's ``__del__`` would seek the closed file and print
    "Exception ignored ... seek of closed file" after the one-line
    error."""

    def __init__(self, f):
        self._file = f

    def discard(self):
        self._file = io.BytesIO() if 'b' in self._file.mode else \
            io.StringIO()

    def __getattr__(self, name):
        return getattr(self._file, name)


@contextlib.contextmanager
def atomic_write(path, mode='w'):
    """Open a temporary file beside ``path`` (``tmpXXXXXXXX<ext>.tmp``),
    yield it, and rename it to ``path`` once written; on an error it is
    removed and ``path`` is left as it was, and an OSError without a file
    name (a full disk) gets ``path``. Not synced to the disk (a
    pseudo-label run writes thousands of files); snapshots, which must
    survive a crash, sync themselves (``runtime.snapshots``). The rename
    replaces ``path`` itself, never what a symbolic link there points to;
    ``runtime.outdir.output_path`` refuses such a link before."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='tmp',
                               suffix=os.path.splitext(path)[1] + '.tmp')
    target = None
    try:
        os.fchmod(fd, 0o666 & ~_umask())   # mkstemp's 0600, like open()'s
        with os.fdopen(fd, mode) as f:
            target = _WriteTarget(f)
            yield target
        os.replace(tmp, path)
    except BaseException as e:
        if target is not None:
            target.discard()
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and not e.filename:
            e.filename = path
        raise


def write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path) as f:
        f.write(text)


@contextlib.contextmanager
def locked(directory):
    """Hold an exclusive lock (``flock``) on ``directory`` while inside,
    waiting for another process that holds it; the kernel releases it when
    a holder dies, also after kill -9. Leaves nothing behind."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
