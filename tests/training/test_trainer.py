"""training/trainer.py: training flags, weight decay, out of memory."""
import os

import numpy as np
import pytest

from helpers import error_line, fcn_args, run_script
from models.fcn8s import CLASSIFICATION_HEAD
from models.io import load_model


@pytest.mark.parametrize('script, flags, message', [
    ('train_classifier', ['--keep-best', 'map', '--val-split', ''],
     '--keep-best map needs a validation split (--val-split)'),
    ('train_classifier', ['--keep-best', 'pointing'],
     "argument --keep-best: invalid choice: 'pointing'"),
    ('train_fcn', ['--cls-weight', '0', '--keep-best', 'map'],
     '--keep-best map needs --cls-weight > 0'),
    ('train_GAIN', ['--keep-best', 'mean_iu'],
     "argument --keep-best: invalid choice: 'mean_iu'"),
])
def test_keep_best_that_cannot_work_is_one_line(script, flags, message,
                                                voc_dir, tmp_path,
                                                monkeypatch, capsys):
    argv = ['--dataset', 'voc', '--data-dir', voc_dir, '--out', tmp_path / 'o']
    if script != 'train_fcn':
        argv += ['--modelfile', tmp_path / 'none.npz']
    code, err = run_script(script, argv + flags, monkeypatch, capsys)
    assert code == 2 and message in error_line(err)
    assert not os.path.exists(str(tmp_path / 'o'))


def head_trained_model(path):
    """A thin model whose file records a trained head (for GAIN)."""
    from models import FCN8s
    from models.io import save_model
    np.random.seed(0)
    model = FCN8s(21, 0.0625)
    model.head_trained_by = ['train_classifier.py']
    save_model(path, model)
    return path


@pytest.mark.parametrize('script', ['train_classifier', 'train_GAIN'])
def test_weight_decay_drives_the_first_adam_step(script, voc, tmp_path,
                                                 monkeypatch, capsys):
    """Adam's first step moves each trained weight by alpha against the
    sign of its gradient. With a weight decay far larger than the loss
    gradients, that gradient is the decay's, ``rate * w``: every trained
    weight with ``|w| > 0.01`` shrinks by alpha; frozen ones do not
    move."""
    start = head_trained_model(str(tmp_path / 'start.npz'))
    out = str(tmp_path / 'out')
    alpha = 1e-4
    code, err = run_script(script, [
        '--dataset', 'voc', '--data-dir', voc, '--out', out, '--modelfile',
        start, '--iterations', 1, '--batch-size', 2, '--val-split', '',
        '--lr', alpha, '--weight-decay', 1e5] + (
            ['--train-trunk', '--keep-head']
            if script == 'train_classifier' else []),
        monkeypatch, capsys)
    assert code == 0, err
    before, _ = load_model(start)
    after, _ = load_model(out + '/model.npz')
    after = dict(after.namedparams())
    checked = 0
    for name, p in before.namedparams():
        w, moved = p.array, after[name].array
        if script == 'train_GAIN' and name.split('/')[1] in \
                CLASSIFICATION_HEAD:
            np.testing.assert_array_equal(moved, w, err_msg=name)
            continue
        big = np.abs(w) > 0.01
        np.testing.assert_allclose(moved[big], w[big] - alpha * np.sign(
            w[big]), rtol=0, atol=1e-3 * alpha, err_msg=name)
        checked += big.sum()
    assert checked > 1000


def test_out_of_memory_in_a_step_names_the_batch_size(files, tmp_path,
                                                      monkeypatch, capsys):
    import chainer

    def update_core(self):
        raise MemoryError()
    monkeypatch.setattr(chainer.training.StandardUpdater, 'update_core',
                        update_core)
    code, err = run_script('train_fcn', fcn_args(files['voc'],
                                                 tmp_path / 'fcn'),
                           monkeypatch, capsys)
    assert code == 2
    assert error_line(err) == ('error: out of memory in a training step on '
                               'images of 32x40 with --batch-size 2; use a '
                               'smaller --batch-size')
