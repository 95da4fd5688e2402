"""What a user relies on when the input is hostile or careless: snapshots
and model files are data, never code; nothing is written outside --out;
nothing finished is deleted before the new run's inputs are checked and it
has something to replace it with; one run per --out; config.json describes
the run that happened; odd flags, images and lists are one-line errors."""
import os
import shutil
import stat

import numpy as np
import pytest

from conftest import error_line, run_script, write_voc
from models import FCN8s, save_model
from test_reliability import toy_trainer
from training.guards import SnapshotError
from training.snapshots import _save_synced, list_snapshots


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A tiny VOC dir and a model file (21 classes, with a GAIN head)."""
    base = tmp_path_factory.mktemp('sec')
    voc = str(base / 'VOC')
    write_voc(voc, {'train': 4, 'val': 2}, size=(32, 40))
    np.random.seed(0)
    model = str(base / 'model.npz')
    save_model(model, FCN8s(21, 1 / 16.))
    return dict(voc=voc, model=model)


def gain_args(files, out, *extra):
    return ['--dataset', 'voc', '--data-dir', files['voc'], '--out', out,
            '--modelfile', files['model'], '--iterations', 2,
            '--batch-size', 2, '--val-split', '', '--snapshot-interval', 1,
            '--attention-interval', 1] + list(extra)


# -- 1. snapshots and model files are data ----------------------------------
class Payload(object):
    """Unpickling it creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, 'w')


def poison(path, marker):
    """Add an object array holding a :class:`Payload` to an npz."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays['extensions/snapshot/payload'] = np.array([Payload(marker)],
                                                     dtype=object)
    with open(path, 'wb') as f:
        np.savez(f, **arrays)


def test_the_payload_is_live(tmp_path):
    """The payload of the tests below runs when unpickled."""
    path, marker = str(tmp_path / 'p.npz'), str(tmp_path / 'marker')
    with open(path, 'wb') as f:
        np.savez(f, a=np.zeros(1))
    poison(path, marker)
    with np.load(path, allow_pickle=True) as f:
        f['extensions/snapshot/payload']
    assert os.path.exists(marker)


def test_a_pickled_snapshot_never_runs_and_is_set_aside(tmp_path, capsys):
    out, marker = tmp_path / 'run', str(tmp_path / 'marker')
    toy_trainer(out, iterations=6)[0].run()
    poison(str(out / 'snapshot_iter_6.npz'), marker)
    trainer, _ = toy_trainer(out, iterations=6)
    trainer.run()
    err = capsys.readouterr().err
    assert not os.path.exists(marker)
    assert 'holds pickled data (object array extensions/snapshot/payload)' \
        in err
    assert 'resuming from %s' % (out / 'snapshot_iter_3.npz') in err
    assert os.path.exists(str(out / 'snapshot_iter_6.npz.corrupt'))


def test_resume_of_a_pickled_snapshot_is_a_one_line_error(tmp_path):
    out, marker = tmp_path / 'run', str(tmp_path / 'marker')
    toy_trainer(out, iterations=3)[0].run()
    path = str(out / 'snapshot_iter_3.npz')
    poison(path, marker)
    trainer, _ = toy_trainer(tmp_path / 'other', resume=path)
    with pytest.raises(SnapshotError) as e:
        trainer.run(show_loop_exception_msg=False)
    assert not os.path.exists(marker)
    assert 'holds pickled data' in str(e.value) and '\n' not in str(e.value)


def test_a_pickled_model_file_never_runs(files, tmp_path, monkeypatch,
                                         capsys):
    path, marker = str(tmp_path / 'm.npz'), str(tmp_path / 'marker')
    shutil.copy(files['model'], path)
    poison(path, marker)
    code, err = run_script('train_GAIN', gain_args(files, tmp_path / 'g') +
                           ['--modelfile', path], monkeypatch, capsys)
    assert code == 2 and path in error_line(err)
    assert not os.path.exists(marker)


def test_snapshots_are_never_written_with_pickled_data(tmp_path):
    path = str(tmp_path / 'snapshot_iter_1.npz')
    with pytest.raises(SnapshotError, match='updater/x is not a plain'):
        _save_synced(path, {'updater/x': np.asarray(None),
                            'updater/iteration': np.asarray(1)})
    assert not os.path.exists(path)


def test_snapshots_of_a_gain_run_hold_only_plain_arrays(files, tmp_path,
                                                        monkeypatch, capsys):
    """Every state chainer serializes for our trainer (RNG states,
    iterator, logs, plots, bad-sample counts) reads back without pickle."""
    out = tmp_path / 'gain'
    code, err = run_script('train_GAIN', gain_args(files, out, '--skip-bad'),
                           monkeypatch, capsys)
    assert code == 0, err
    for _, path in list_snapshots(str(out)):
        with np.load(path, allow_pickle=False) as f:
            kinds = {f[k].dtype.kind for k in f.files}
        assert kinds <= set('biufU'), kinds


# -- 10. small ones ----------------------------------------------------------
@pytest.mark.parametrize('umask,mode', [(0o022, 0o644), (0o027, 0o640)])
def test_model_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        save_model(str(tmp_path / 'model.npz'), FCN8s(3, 1 / 16.))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(str(tmp_path / 'model.npz')).st_mode) == mode


def test_a_text_file_is_not_a_model_file(files, tmp_path, monkeypatch,
                                         capsys):
    path = tmp_path / 'model.npz'
    path.write_text('hello\n')
    code, err = run_script('train_GAIN', gain_args(files, tmp_path / 'g') +
                           ['--modelfile', path], monkeypatch, capsys)
    assert code == 2
    assert error_line(err) == ('error: %s: not a model file (not an npz '
                               'archive)' % path)
