"""The scripts in the order users run them, on a tiny VOC directory:
train_classifier freezes the trunk, train_GAIN freezes the head, evaluate
reproduces fcn's table, and the same seed gives the same weights."""
import json
import os

import chainer
import fcn
import numpy as np
import PIL.Image
import pytest

from conftest import run_script, write_voc
from datasets import VOCSegmentation, preprocess
from datasets.voc import voc_palette
from evaluate import evaluate_model
from models import FCN8s, load_model, save_model
from models.fcn8s import CLASSIFICATION_HEAD

N_VOC = 21


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp('pipeline')
    voc = str(base / 'VOC')
    write_voc(voc, {'train': 6, 'val': 2}, size=(40, 48))
    np.random.seed(0)
    model = FCN8s(N_VOC, 1 / 16.)
    # a file in fcn's format: no GAIN head, no metadata
    fcn_file = str(base / 'fcn8s.npz')
    with open(fcn_file, 'wb') as f:
        np.savez(f, **{n.lstrip('/'): p.array for n, p in model.namedparams()
                       if n.split('/')[1] not in CLASSIFICATION_HEAD})
    project_file = str(base / 'project.npz')
    save_model(project_file, model)
    return dict(voc=voc, fcn=fcn_file, project=project_file)


def params(path):
    model, _ = load_model(path)
    return {n: p.array.copy() for n, p in model.namedparams()}


def is_head(name):
    return name.split('/')[1] in CLASSIFICATION_HEAD


def common(setup, out):
    return ['--dataset', 'voc', '--data-dir', setup['voc'], '--batch-size',
            2, '--out', out]


def test_classifier_then_gain(setup, tmp_path, monkeypatch, capsys):
    cls = str(tmp_path / 'cls')
    code, err = run_script('train_classifier', common(setup, cls) + [
        '--modelfile', setup['project'], '--iterations', 4], monkeypatch,
        capsys)
    assert code == 0, err
    before, after = params(setup['project']), params(cls + '/model.npz')
    for name in after:
        if is_head(name):  # every head parameter moved
            assert not np.array_equal(before[name], after[name]), name
        else:
            assert np.array_equal(before[name], after[name]), name
    config = json.load(open(os.path.join(cls, 'config.json')))
    assert config['n_class'] == N_VOC and config['iterations'] == 4
    assert os.path.exists(os.path.join(cls, 'loss.png'))

    gain = str(tmp_path / 'gain')
    code, err = run_script('train_GAIN', common(setup, gain) + [
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


def test_same_seed_same_weights(setup, tmp_path, monkeypatch, capsys):
    """A run is reproducible on CPU: GAIN twice with one seed."""
    cls = str(tmp_path / 'cls')
    run_script('train_classifier', common(setup, cls) + [
        '--modelfile', setup['fcn'], '--iterations', 2], monkeypatch, capsys)
    runs = []
    for i, seed in enumerate((3, 3, 4)):
        out = str(tmp_path / ('gain%d' % i))
        code, err = run_script('train_GAIN', common(setup, out) + [
            '--modelfile', cls + '/model.npz', '--iterations', 2,
            '--seed', seed, '--val-split', ''], monkeypatch, capsys)
        assert code == 0, err
        runs.append(params(out + '/model.npz'))
        # a run shorter than --attention-interval still ends with a picture
        assert os.listdir(os.path.join(out, 'attention')) == [
            'iter_000002.png']
    assert all(np.array_equal(runs[0][n], runs[1][n]) for n in runs[0])
    assert not all(np.array_equal(runs[0][n], runs[2][n]) for n in runs[0])


def test_evaluate_matches_fcn_label_accuracy_score(setup):
    dataset = VOCSegmentation(setup['voc'], 'train')
    model, _ = load_model(setup['fcn'])
    rng = np.random.RandomState(0)
    for _, p in model.namedparams():  # non-trivial predictions
        if 'score' in _:
            p.array[...] = rng.normal(0, 0.01, p.shape)
    device = chainer.get_device('@numpy')
    # one image per batch, as below: batched and one-by-one scores round
    # differently, and an argmax between near-equal scores may flip
    ours = evaluate_model(model, dataset, device, batch_size=1)
    trues, preds = [], []
    for img, lbl in (dataset[i] for i in range(len(dataset))):
        with chainer.using_config('train', False):
            score = model.segment(preprocess(img)[None]).array
        trues.append(lbl)
        preds.append(score[0].argmax(axis=0))
    assert len(np.unique(np.concatenate([p.ravel() for p in preds]))) > 1
    ref = fcn.utils.label_accuracy_score(trues, preds, N_VOC)
    got = [ours[k] for k in ('accuracy', 'accuracy_class', 'mean_iu',
                             'fwavacc')]
    np.testing.assert_allclose(got, ref, rtol=1e-12)


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


def test_plain_fcn_file_gets_a_fresh_head(setup):
    model, has_head = load_model(setup['fcn'])
    assert not has_head and model.n_class == N_VOC
    assert model.score_cl.W.shape == (N_VOC - 1, model.fc6_cl.W.shape[0])
    assert np.abs(model.fc6_cl.W.array).max() > 0


def test_writes_nothing_over_a_finished_run(setup, tmp_path, monkeypatch,
                                             capsys):
    out = str(tmp_path / 'cls')
    args = common(setup, out) + ['--modelfile', setup['fcn'],
                                 '--iterations', 1]
    assert run_script('train_classifier', args, monkeypatch, capsys)[0] == 0
    before = open(out + '/model.npz', 'rb').read()
    code, err = run_script('train_classifier', args, monkeypatch, capsys)
    assert code != 0 and 'finished run' in err
    assert open(out + '/model.npz', 'rb').read() == before


def test_tiny_voc_written_images_read_back(tmp_path):
    written = write_voc(str(tmp_path), {'train': 3}, n_class=4)
    dataset = VOCSegmentation(str(tmp_path), 'train')
    for i, image_id in enumerate(dataset.ids):
        img, lbl = dataset[i]
        src_img, src_lbl = written[image_id]
        expected = src_lbl.astype(np.int32)
        expected[expected == 255] = -1
        assert np.array_equal(lbl, expected)
        assert img.shape == src_img.shape and img.dtype == np.uint8
        decoded = np.asarray(PIL.Image.open(dataset.image_files[i]))
        assert np.array_equal(img, decoded)  # RGB order, no resampling


def test_pretraining_options_train_the_trunk(setup, tmp_path, monkeypatch,
                                             capsys):
    """train_classifier --train-trunk (no model file) and train_fcn
    --cls-weight both move the trunk and the head."""
    pre = str(tmp_path / 'pre')
    code, err = run_script('train_classifier', common(setup, pre) + [
        '--train-trunk', '--width', 0.0625, '--iterations', 2], monkeypatch,
        capsys)
    assert code == 0, err
    fcn_out = str(tmp_path / 'fcn')
    code, err = run_script('train_fcn', common(setup, fcn_out) + [
        '--modelfile', pre + '/model.npz', '--cls-weight', 1,
        '--iterations', 2], monkeypatch, capsys)
    assert code == 0, err
    a, b = params(pre + '/model.npz'), params(fcn_out + '/model.npz')
    for name in ('/conv1_1/W', '/score_fr/W', '/fc6_cl/W', '/score_cl/W'):
        assert not np.array_equal(a[name], b[name]), name
    log = json.load(open(os.path.join(fcn_out, 'log')))
    assert {'main/seg', 'main/cl'} <= set(log[-1])
    code, err = run_script('train_classifier', common(
        setup, str(tmp_path / 'x')), monkeypatch, capsys)
    assert code != 0 and '--modelfile is required' in err


def test_voc_palette_colours():
    """The colours VOC's label PNGs use (devkit's VOClabelcolormap)."""
    palette = np.array(voc_palette()).reshape(256, 3)
    assert palette[0].tolist() == [0, 0, 0]
    assert palette[1].tolist() == [128, 0, 0]        # aeroplane
    assert palette[15].tolist() == [192, 128, 128]   # person
    assert palette[20].tolist() == [0, 64, 128]      # tvmonitor
    assert palette[255].tolist() == [224, 224, 192]  # void
