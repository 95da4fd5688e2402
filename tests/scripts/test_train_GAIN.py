"""train_GAIN.py: the trunk learns, the head stays, masks where needed."""
import json
import os

import chainer
import numpy as np
import pytest

from datasets import get_dataset, preprocess_batch
from helpers import (N_VOC, numpy_softmax_cross_entropy, params, run_script,
                     voc_args)
from models.fcn8s import CLASSIFICATION_HEAD
from runtime.errors import UsageError
from models.io import load_model
from train_GAIN import pick_ext_images


def is_head(name):
    return name.split('/')[1] in CLASSIFICATION_HEAD


def test_classifier_then_gain(pipeline, tmp_path, monkeypatch, capsys):
    cls = str(tmp_path / 'cls')
    code, err = run_script('train_classifier', voc_args(pipeline, cls) + [
        '--modelfile', pipeline['project'], '--iterations', 4], monkeypatch,
        capsys)
    assert code == 0, err
    before, after = params(pipeline['project']), params(cls + '/model.npz')
    for name in after:
        if is_head(name):  # every head parameter moved
            assert not np.array_equal(before[name], after[name]), name
        else:
            assert np.array_equal(before[name], after[name]), name
    config = json.load(open(os.path.join(cls, 'config.json')))
    assert config['n_class'] == N_VOC and config['iterations'] == 4
    assert os.path.exists(os.path.join(cls, 'loss.png'))

    gain = str(tmp_path / 'gain')
    code, err = run_script('train_GAIN', voc_args(pipeline, gain) + [
        '--modelfile', cls + '/model.npz', '--iterations', 3,
        '--ext-images', 2, '--ext-weight', 1, '--attention-interval', 3,
        '--am-mode', 'joint'], monkeypatch, capsys)
    assert code == 0, err
    trained = params(gain + '/model.npz')
    moved = [n for n in trained if not np.array_equal(trained[n], after[n])]
    assert moved and not any(is_head(n) for n in moved)
    assert any(n.startswith('/conv1_1') for n in moved)
    for name in ('model.npz', 'log', 'config.json', 'loss.png',
                 'attention/iter_000003.png', 'ext_images.txt'):
        assert os.path.exists(os.path.join(gain, name)), name
    assert not [f for f in os.listdir(gain) if f.startswith('loss_')]
    config = json.load(open(os.path.join(gain, 'config.json')))
    assert len(config['ext_image_ids']) == 2
    log = json.load(open(os.path.join(gain, 'log')))
    assert {'main/cl', 'main/am', 'main/ext', 'main/seg', 'lr'} <= set(log[-1])


def test_same_seed_same_weights(pipeline, tmp_path, monkeypatch, capsys):
    """A run is reproducible on CPU: GAIN twice with one seed."""
    cls = str(tmp_path / 'cls')
    run_script('train_classifier', voc_args(pipeline, cls) + [
        '--modelfile', pipeline['fcn'], '--iterations', 2], monkeypatch,
        capsys)
    runs = []
    for i, seed in enumerate((3, 3, 4)):
        out = str(tmp_path / ('gain%d' % i))
        code, err = run_script('train_GAIN', voc_args(pipeline, out) + [
            '--modelfile', cls + '/model.npz', '--iterations', 2,
            '--seed', seed, '--val-split', ''], monkeypatch, capsys)
        assert code == 0, err
        runs.append(params(out + '/model.npz'))
        # a run shorter than --attention-interval still ends with a picture
        assert os.listdir(os.path.join(out, 'attention')) == [
            'iter_000002.png']
    assert all(np.array_equal(runs[0][n], runs[1][n]) for n in runs[0])
    assert not all(np.array_equal(runs[0][n], runs[2][n]) for n in runs[0])


def test_ext_images_are_drawn_among_masked_images():
    has_mask = np.zeros(50, bool)
    has_mask[::5] = True                            # 10 of 50
    for seed in range(5):
        picked = pick_ext_images(has_mask, 4, seed)
        assert len(picked) == 4 and has_mask[picked].all()
        assert len(set(picked.tolist())) == 4
    assert has_mask[pick_ext_images(has_mask, 0.2, 0)].sum() == 10
    assert np.array_equal(pick_ext_images(has_mask, 0.1, 3),
                          pick_ext_images(has_mask, 5, 3))
    for value in (11, 0.25):
        with pytest.raises(UsageError) as e:
            pick_ext_images(has_mask, value, 0)
        assert 'only 10 of the 50 training images have a mask' in \
            str(e.value)
    # every image masked: the draw of the earlier versions, seed for seed
    everyone = np.ones(30, bool)
    assert np.array_equal(pick_ext_images(everyone, 6, 1), np.sort(
        np.random.RandomState(1).choice(30, 6, replace=False)))


def test_train_gain_ext_images_only_among_masked(weak_voc, modelfile,
                                                 tmp_path, monkeypatch,
                                                 capsys):
    root, _ = weak_voc
    common = ['--dataset', 'voc', '--data-dir', root, '--modelfile',
              modelfile, '--iterations', 2, '--batch-size', 2,
              '--ext-weight', 1, '--attention-val-images', 2]
    out = str(tmp_path / 'gain_ext')
    code, err = run_script('train_GAIN', common + [
        '--ext-images', 3, '--out', out], monkeypatch, capsys)
    assert code == 0, err
    with open(os.path.join(out, 'ext_images.txt')) as f:
        assert f.read().split() == ['train_000', 'train_001', 'train_002']
    with open(os.path.join(out, 'config.json')) as f:
        config = json.load(f)
    assert config['voc_layout'] == 'auto'
    code, err = run_script('train_GAIN', common + [
        '--ext-images', 4, '--out', str(tmp_path / 'too_many')],
        monkeypatch, capsys)
    assert code == 2
    assert 'only 3 of the 7 training images have a mask' in err


def test_train_gain_validates_on_the_masked_val_images(
        weak_voc, modelfile, tmp_path, monkeypatch, capsys):
    """The validation L_seg and L_cl of a joined val split are those of its
    two masked images (numpy, from the saved model's scores); without any
    mask in the val split L_cl alone is validated, over all images. Every
    validation batch reports the same terms (a data-parallel evaluator
    averages them key by key)."""
    root, _ = weak_voc
    common = ['--dataset', 'voc', '--data-dir', root, '--modelfile',
              modelfile, '--iterations', 2, '--batch-size', 2,
              '--attention-val-images', 2, '--deterministic']
    logs = {}
    for layout in ('auto', 'classification'):
        out = str(tmp_path / layout)
        code, err = run_script('train_GAIN', common + [
            '--voc-layout', layout, '--out', out], monkeypatch, capsys)
        assert code == 0, err
        with open(os.path.join(out, 'log')) as f:
            logs[layout] = json.load(f)[-1]
    assert 'validation/main/seg' not in logs['classification']
    assert logs['classification']['validation/main/cl'] > 0

    val = get_dataset('voc', root, 'val')
    masked = [val[i] for i in np.flatnonzero(val.has_mask)]
    assert len(masked) == 2 < len(val)
    model, _ = load_model(str(tmp_path / 'auto' / 'model.npz'))
    x = preprocess_batch([img for img, _, _ in masked])
    lbl = np.stack([label_map for _, label_map, _ in masked])
    t = np.stack([labels for _, _, labels in masked])
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        score = model.segment(x).array
        z = model.classify(x).array.astype(np.float64)
    cl = np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z))))
    got = logs['auto']
    assert got['validation/main/seg'] == pytest.approx(
        numpy_softmax_cross_entropy(score, lbl, [0, 1]), rel=1e-4)
    assert got['validation/main/cl'] == pytest.approx(cl, rel=1e-4)
