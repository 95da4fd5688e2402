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

from helpers import run_script, write_voc
from datasets import VOCSegmentation, preprocess
from datasets.voc import voc_palette
from evaluate import evaluate_model
from models import FCN8s
from models.fcn8s import CLASSIFICATION_HEAD
from runtime.model_files import load_model, save_model

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
    ours, _ = evaluate_model(model, dataset, device, batch_size=1)
    trues, preds = [], []
    for img, lbl, _ in (dataset[i] for i in range(len(dataset))):
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
        img, lbl, _ = dataset[i]
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


def test_head_record_through_the_stages(setup, tmp_path, monkeypatch,
                                        capsys):
    """train_fcn records a head it trained (--cls-weight); train_classifier
    draws a fresh head unless --keep-head and records itself; train_GAIN
    refuses a head that no stage trained."""
    def stage(script, out, *extra):
        code, err = run_script(script, common(setup, str(out)) + [
            '--iterations', 1, '--val-split', ''] + list(extra),
            monkeypatch, capsys)
        return code, err, str(out) + '/model.npz'

    code, _, seg_only = stage('train_fcn', tmp_path / 'seg', '--width',
                              1 / 16., '--cls-weight', 0)
    assert code == 0 and load_model(seg_only)[0].head_trained_by == []
    code, err, _ = stage('train_GAIN', tmp_path / 'gain', '--modelfile',
                         seg_only)
    assert code == 2 and 'head was never trained' in err
    assert not os.path.exists(tmp_path / 'gain' / 'model.npz')

    code, _, multi = stage('train_fcn', tmp_path / 'multi', '--width',
                           1 / 16., '--cls-weight', 1)
    first = load_model(multi)[0]
    assert code == 0
    assert first.head_trained_by == ['train_fcn.py --cls-weight 1']
    for keep in (False, True):
        code, err, path = stage(
            'train_classifier', tmp_path / ('cls%d' % keep), '--modelfile',
            multi, '--lr', 1e-9, *(['--keep-head'] if keep else []))
        assert code == 0, err
        model = load_model(path)[0]
        assert model.head_trained_by == (
            first.head_trained_by if keep else []) + ['train_classifier.py']
        moved = max(float(np.abs(getattr(model, n).W.array -
                                 getattr(first, n).W.array).max())
                    for n in CLASSIFICATION_HEAD)
        assert (moved < 1e-6) == keep, moved   # lr 1e-9: a fresh head moved


def test_validation_figures_equal_evaluate(setup, tmp_path, monkeypatch,
                                           capsys):
    """train_fcn's validation mean IU and train_GAIN's validation pointing
    game, energy and attention mIoU are evaluate.py's figures of the final
    model on the val split (the log in percent, evaluate's metrics.json in
    fractions)."""
    from metrics import AttentionMetrics
    from metrics import ClassificationMetrics, SegmentationMetrics
    val = VOCSegmentation(setup['voc'], 'val')
    device = chainer.get_device('@numpy')
    fcn_out, gain = str(tmp_path / 'fcn'), str(tmp_path / 'gain')
    code, err = run_script('train_fcn', common(setup, fcn_out) + [
        '--width', 1 / 16., '--cls-weight', 1, '--iterations', 3],
        monkeypatch, capsys)
    assert code == 0, err
    log = json.load(open(os.path.join(fcn_out, 'log')))
    ours, _ = evaluate_model(load_model(fcn_out + '/model.npz')[0], val, device,
                          metrics=[SegmentationMetrics(N_VOC)])
    assert log[-1]['validation/main/mean_iu'] == pytest.approx(
        ours['mean_iu'], rel=1e-6)

    code, err = run_script('train_GAIN', common(setup, gain) + [
        '--modelfile', fcn_out + '/model.npz', '--iterations', 3],
        monkeypatch, capsys)
    assert code == 0, err
    log = json.load(open(os.path.join(gain, 'log')))
    ours, _ = evaluate_model(load_model(gain + '/model.npz')[0], val, device,
                          metrics=[ClassificationMetrics(N_VOC),
                                   AttentionMetrics(N_VOC)])
    for key in ('pointing', 'energy', 'attention_miou'):
        assert log[-1]['validation/main/' + key] == pytest.approx(
            100 * ours[key], rel=1e-5), key


def test_flat_grad_cams_are_flagged(setup, tmp_path, monkeypatch, capsys):
    """A head without class evidence at conv5_3 (zero score layer: every
    Grad-CAM is flat) is reported at the start of train_GAIN and marked by
    evaluate.py."""
    model = load_model(setup['project'])[0]
    model.score_cl.W.array[...] = 0
    model.head_trained_by = ['a test fixture']
    flat = str(tmp_path / 'flat.npz')
    save_model(flat, model)
    code, err = run_script('train_GAIN', common(setup, str(
        tmp_path / 'gain')) + ['--modelfile', flat, '--iterations', 1],
        monkeypatch, capsys)
    assert code == 0, err
    assert ('WARNING: %s: 100.0 %% of its Grad-CAMs are all zero (more than '
            '5 %%: no class evidence at conv5_3)' % flat) in err
    code, err = run_script('evaluate', [
        '--dataset', 'voc', '--data-dir', setup['voc'], '--split', 'val',
        '--modelfile', flat, '--names', 'flat', '--out',
        str(tmp_path / 'eval')], monkeypatch, capsys)
    assert code == 0, err
    assert 'warning: flat: 100.0 % of its Grad-CAMs are all zero' in err
    metrics = json.load(open(tmp_path / 'eval' / 'metrics.json'))
    assert metrics['models']['flat']['zero_cams'] == 1.0
    assert '| flat (!) |' in open(tmp_path / 'eval' / 'metrics.md').read()
