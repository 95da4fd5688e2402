"""runtime/files.py: the one way to write (atomic, never through a link,
a full disk named) and the one way to read (regular files only, capped)."""
import errno
import gc
import os
import sys

import numpy as np
import pytest

from helpers import error_line, read_tree, run_script, write_voc
from models import FCN8s
from models.io import save_model
from runtime import files
from runtime.errors import OutputError, UsageError
from runtime.files import atomic_write, open_input, output_path


class FullDisk(object):
    """A file whose writes fail with ENOSPC once ``room`` bytes are
    written, as on a full disk."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, data):
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, 'No space left on device')
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def fill_disk(monkeypatch, room=300):
    """From now on every atomic write has ``room`` bytes of room."""
    real_fdopen = os.fdopen
    monkeypatch.setattr(files.os, 'fdopen', lambda fd, mode='r': FullDisk(
        real_fdopen(fd, mode), room))


@pytest.fixture
def ignored(monkeypatch):
    """The exceptions Python would print as "Exception ignored in ..."."""
    found = []
    monkeypatch.setattr(sys, 'unraisablehook', found.append)
    yield found
    gc.collect()


def test_a_full_disk_in_savez_leaves_nothing_and_names_the_file(
        tmp_path, monkeypatch, ignored):
    fill_disk(monkeypatch)
    path = str(tmp_path / 'cams.npz')
    with pytest.raises(OSError) as e:
        with atomic_write(path, 'wb') as f:
            np.savez(f, a=np.zeros(1000))
    assert e.value.errno == errno.ENOSPC and e.value.filename == path
    del e
    gc.collect()
    assert ignored == []          # no "Exception ignored in ZipFile"
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize('script', ['visualize', 'make_pseudo_labels',
                                    'evaluate'])
def test_tools_on_a_full_disk_say_one_line_naming_the_file(
        tmp_path, monkeypatch, capsys, ignored, script):
    voc = str(tmp_path / 'VOC')
    write_voc(voc, {'val': 2}, size=(32, 40))
    np.random.seed(0)
    model = FCN8s(21, 1 / 16.)
    model.head_trained_by = ['a test fixture']
    path = str(tmp_path / 'model.npz')
    save_model(path, model)
    fill_disk(monkeypatch)
    out = tmp_path / 'out'
    argv = ['--dataset', 'voc', '--data-dir', voc, '--split', 'val',
            '--out', out] + {
        'visualize': ['--pretrained', path, '--trained', path,
                      '--save-cams'],
        'make_pseudo_labels': ['--modelfile', path],
        'evaluate': ['--modelfile', path, '--no-attention']}[script]
    code, err = run_script(script, argv, monkeypatch, capsys)
    gc.collect()
    assert code == 1
    line = error_line(err)
    assert line.startswith('error: %s' % out) and line.endswith(
        ': No space left on device')
    assert ignored == []


def victim(tmp_path):
    """An outside directory holding one file, for a link to point at."""
    path = tmp_path / 'victim_dir'
    path.mkdir()
    (path / 'keep.txt').write_text('DATA\n')
    return path


def test_output_path_checks_every_entry_without_following_links(tmp_path):
    out = tmp_path / 'out'
    (out / 'cams').mkdir(parents=True)
    target = victim(tmp_path)
    os.symlink(str(target), str(out / 'cams' / 'sub'))
    os.symlink(str(target / 'keep.txt'), str(out / 'x.png'))
    (out / 'plain').write_text('')
    for names, message in [
            (('cams', 'sub', 'a.npz'), 'cams/sub is a symbolic link'),
            (('x.png',), 'x.png is a symbolic link'),
            (('plain', 'a.png'), 'plain is a file where this tool writes a '
             'directory'),
            (('cams',), 'cams is a directory where this tool writes a '
             'file')]:
        with pytest.raises(OutputError, match=message):
            output_path(str(out), *names)
    assert read_tree(str(target)) == {'keep.txt': b'DATA\n'}
    path = output_path(str(out), 'attention', directory=True)
    assert os.path.isdir(path) and not os.path.islink(path)


def test_output_paths_stay_under_out(tmp_path):
    out = str(tmp_path / 'out')
    os.makedirs(out)
    os.symlink(str(tmp_path), os.path.join(out, 'link'))
    for names in [('..', 'x.png'), ('a/../../x.png',), ('/etc/x.png',),
                  ('..',), ('.',)]:
        with pytest.raises(OutputError, match='outside --out'):
            output_path(out, *names)
    with pytest.raises(OutputError, match='link is a symbolic link'):
        output_path(out, 'link', 'x.png')
    path = output_path(out, 'cams', 'sub/x.npz')
    assert path == os.path.join(out, 'cams', 'sub', 'x.npz')
    assert os.path.isdir(os.path.dirname(path))


def test_a_write_replaces_a_planted_link_and_never_follows_it(tmp_path):
    target = tmp_path / 'victim.txt'
    target.write_text('DATA\n')
    path = tmp_path / 'out.txt'
    os.symlink(str(target), str(path))
    files.write_text(str(path), 'new\n')
    assert target.read_text() == 'DATA\n'
    assert not os.path.islink(str(path)) and path.read_text() == 'new\n'
    assert sorted(os.listdir(str(tmp_path))) == ['out.txt', 'victim.txt']


@pytest.mark.parametrize('kind', ['fifo', 'device', 'directory', 'large'])
def test_only_regular_files_under_their_cap_are_read(tmp_path, monkeypatch,
                                                     kind):
    """A FIFO is opened without waiting for a writer, then refused like a
    device or a directory, in one line naming the file and its flag."""
    path = str(tmp_path / 'config.json')
    if kind == 'fifo':
        os.mkfifo(path)
    elif kind == 'device':
        path = '/dev/zero'
    elif kind == 'directory':
        os.mkdir(path)
    else:
        with open(path, 'w') as f:
            f.write('[0]' + ' ' * 1000)
        monkeypatch.setitem(files.LIMITS, 'config', 1000)
    with pytest.raises(UsageError) as e:
        open_input(path, 'config', '--tau-from')
    assert str(e.value) == '--tau-from %s: %s' % (path, {
        'fifo': 'a FIFO, not a regular file',
        'device': 'a device, not a regular file',
        'directory': 'a directory, not a regular file',
        'large': '1003 bytes, more than the 1000 read for a config file',
    }[kind])
