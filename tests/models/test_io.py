"""models/io.py: model files saved, loaded and refused."""
import os
import shutil
import stat

import numpy as np
import pytest

from helpers import N_VOC, error_line, gain_args, poison, run_script
from models import FCN8s
from runtime.errors import ModelFileError
from models.io import load_model, save_model


def test_project_model_file_round_trip(tmp_path):
    model = FCN8s(6, 0.125)
    rng = np.random.RandomState(0)
    for _, p in model.namedparams():
        p.array[...] = rng.normal(size=p.shape)
    save_model(str(tmp_path / 'm.npz'), model)
    loaded, has_head = load_model(str(tmp_path / 'm.npz'))
    assert has_head and (loaded.n_class, loaded.width) == (6, 0.125)
    for (n, a), (_, b) in zip(model.namedparams(), loaded.namedparams()):
        assert np.array_equal(a.array, b.array), n


def test_plain_fcn_file_gets_a_fresh_head(pipeline):
    model, has_head = load_model(pipeline['fcn'])
    assert not has_head and model.n_class == N_VOC
    assert model.score_cl.W.shape == (N_VOC - 1, model.fc6_cl.W.shape[0])
    assert np.abs(model.fc6_cl.W.array).max() > 0


@pytest.mark.parametrize('name,script,message', [
    ('missing', 'train_classifier', 'no such file'),
    ('dir', 'train_classifier', 'a directory, not a regular file'),
    ('truncated', 'train_classifier', 'not a model file'),
    ('npy', 'train_classifier', 'a single array'),
    ('vgg', 'train_classifier', 'not an FCN8s model file'),
    ('n5', 'train_classifier', 'has n_class=5, expected 21'),
    ('nan', 'train_classifier', 'fc7/b holds NaN or inf'),
    ('nohead', 'train_GAIN', 'has no GAIN classification head'),
    ('untrained', 'train_GAIN', 'classification head was never trained'),
    ('untrained', 'make_pseudo_labels', 'head was never trained'),
    ('n5', 'train_fcn', 'has n_class=5'),
])
def test_bad_modelfile(files, tmp_path, monkeypatch, capsys, name, script,
                       message):
    code, err = run_script(script, ['--dataset', 'voc', '--data-dir',
                                    files['voc'], '--modelfile', files[name],
                                    '--out', tmp_path], monkeypatch, capsys)
    line = error_line(err)
    assert code == 2 and files[name] in line and message in line, line


def test_model_of_another_width(files, tmp_path, monkeypatch, capsys):
    code, err = run_script('train_fcn', [
        '--dataset', 'voc', '--data-dir', files['voc'], '--modelfile',
        files['good'], '--width', '0.125', '--out', tmp_path],
        monkeypatch, capsys)
    assert code == 2
    assert 'has width=0.0625, expected 0.125' in error_line(err)


def test_every_truncation_of_a_model_file_is_a_model_file_error(files,
                                                                tmp_path):
    data = open(files['good'], 'rb').read()
    rng = np.random.RandomState(0)
    for cut in [0, 1, 30, len(data) - 1] + list(rng.randint(0, len(data), 8)):
        path = str(tmp_path / 'cut.npz')
        open(path, 'wb').write(data[:cut])
        with pytest.raises(ModelFileError, match='cut.npz'):
            load_model(path)


def test_a_pickled_model_file_never_runs(files, tmp_path, monkeypatch,
                                         capsys):
    path, marker = str(tmp_path / 'm.npz'), str(tmp_path / 'marker')
    shutil.copy(files['model'], path)
    poison(path, marker)
    code, err = run_script('train_GAIN', gain_args(files, tmp_path / 'g') +
                           ['--modelfile', path], monkeypatch, capsys)
    assert code == 2 and path in error_line(err)
    assert not os.path.exists(marker)


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
