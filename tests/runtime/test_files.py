"""runtime/files.py: atomic writes on a full disk, and the directory lock."""
import errno
import gc
import os
import sys
import threading

import numpy as np
import pytest

from helpers import error_line, run_script, write_voc
from models import FCN8s
from runtime import files
from runtime.files import atomic_write, locked
from runtime.model_files import save_model


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


def test_locked_waits_for_the_holder(tmp_path):
    order = []

    def second():
        with locked(str(tmp_path)):
            order.append('second')
    with locked(str(tmp_path)):
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.2)            # it cannot get in meanwhile
        order.append('first')
    thread.join()
    assert order == ['first', 'second']
