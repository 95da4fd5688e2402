"""Atomic writes: a file appears whole under its name or not at all."""
import contextlib
import os
import tempfile


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path, mode='w'):
    """Open a temporary file beside ``path`` (``tmpXXXXXXXX<ext>.tmp``),
    yield it, and rename it to ``path`` once written; on an error it is
    removed and ``path`` is left as it was. Not synced to the disk (a
    pseudo-label run writes thousands of files); snapshots, which must
    survive a crash, sync themselves (``runtime.snapshots``)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='tmp',
                               suffix=os.path.splitext(path)[1] + '.tmp')
    try:
        os.fchmod(fd, 0o666 & ~_umask())   # mkstemp's 0600, like open()'s
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path) as f:
        f.write(text)
