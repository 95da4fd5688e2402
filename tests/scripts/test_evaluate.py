"""evaluate.py: its table, attention columns, curve and --compare."""
import json
import os
import re
import subprocess
import sys

import chainer
import fcn
import numpy as np
import PIL.Image
import pytest

import evaluate
from datasets import VOCSegmentation, get_dataset, preprocess, preprocess_batch
from evaluate import evaluate_model
from helpers import ENV, N_VOC, ROOT, run_script, voc_args, write_voc
from models import FCN8s, class_cams, grad_cam, normalize_cam
from runtime import cli
from models.io import load_model, save_model


def test_evaluate_matches_fcn_label_accuracy_score(pipeline):
    dataset = VOCSegmentation(pipeline['voc'], 'train')
    model, _ = load_model(pipeline['fcn'])
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


def test_flat_grad_cams_are_flagged(pipeline, tmp_path, monkeypatch, capsys):
    """A head without class evidence at conv5_3 (zero score layer: every
    Grad-CAM is flat) is reported at the start of train_GAIN and marked by
    evaluate.py."""
    model = load_model(pipeline['project'])[0]
    model.score_cl.W.array[...] = 0
    model.head_trained_by = ['a test fixture']
    flat = str(tmp_path / 'flat.npz')
    save_model(flat, model)
    code, err = run_script('train_GAIN', voc_args(pipeline, str(
        tmp_path / 'gain')) + ['--modelfile', flat, '--iterations', 1],
        monkeypatch, capsys)
    assert code == 0, err
    assert ('WARNING: %s: 100.0 %% of its Grad-CAMs are all zero (more than '
            '5 %%: no class evidence at conv5_3)' % flat) in err
    # and every class's pointing game (a flat map misses) is below chance
    assert re.search(r'; class \w+: pointing game \(1.44 px\) 0.0 %, less '
                     r'than 2 times its chance \([\d.]+ %\)', err)
    code, err = run_script('evaluate', [
        '--dataset', 'voc', '--data-dir', pipeline['voc'], '--split', 'val',
        '--modelfile', flat, '--names', 'flat', '--out',
        str(tmp_path / 'eval')], monkeypatch, capsys)
    assert code == 0, err
    assert 'warning: flat: 100.0 % of its Grad-CAMs are all zero' in err
    assert re.search(r'; class \w+: pointing game \(1.44 px\)', err)
    metrics = json.load(open(tmp_path / 'eval' / 'metrics.json'))
    assert metrics['models']['flat']['zero_cams'] == 1.0
    assert '| flat (!) |' in open(tmp_path / 'eval' / 'metrics.md').read()


def save_thin_models(directory, names, n_class=21):
    paths = []
    for seed, name in enumerate(names):
        np.random.seed(seed)
        model = FCN8s(n_class, width=1 / 16.)
        rng = np.random.RandomState(seed + 1)
        for pname, p in model.namedparams():
            if 'score' in pname or pname.endswith('/b'):
                p.array[...] = rng.normal(0, 0.1, p.shape)
        model.head_trained_by = ['a test fixture']
        path = os.path.join(directory, name, 'model.npz')
        save_model(path, model)
        paths.append(path)
    return paths


def run_main(module, argv, monkeypatch):
    monkeypatch.setattr(sys, 'argv', [module.__name__ + '.py'] + argv)
    cli.run(module.main)


@pytest.fixture
def eval_setup(tmp_path):
    voc = str(tmp_path / 'VOC')
    write_voc(voc, {'val': 3})
    return voc, save_thin_models(str(tmp_path), ['before', 'after'])


def test_evaluate_attention_columns_curve_and_compare(eval_setup, tmp_path,
                                                      monkeypatch, capsys):
    voc, (a, b) = eval_setup
    out = str(tmp_path / 'eval')
    run_main(evaluate, ['--dataset', 'voc', '--data-dir', voc, '--split',
                        'val', '--modelfile', a, b, '--out', out,
                        '--compare', 'before', '1', '--batch-size', '2'],
             monkeypatch)
    with open(os.path.join(out, 'metrics.md')) as f:
        text = f.read()
    header = text.splitlines()[0]
    for title in ('Mean IU', 'mAP', 'Attention mIoU', 'best tau',
                  'Attention mIoU @0.50', 'Energy', 'Pointing game (15 px)',
                  'Pointing game (1.44 px)'):    # 15 / 500 of 48 px
        assert title in header
    assert 'Per class, before:' in text and '| class | AP | IoU |' in text
    # (random heads: one that points at chance is marked ' (!)')
    assert '| before ' in text and '| after ' in text
    assert '| metric | A: before | B: after | B - A |' in text

    with open(os.path.join(out, 'metrics.json')) as f:
        saved = json.load(f)
    ma, mb = saved['models']['before'], saved['models']['after']
    for m in (ma, mb):
        assert 0 <= m['attention_miou'] <= 1
        assert m['attention_miou'] >= m['attention_miou_fixed'] - 1e-12
        assert m['attention_miou'] == max(m['attention_curve']['miou'])
        assert 0 <= m['energy'] <= 1 and 0 <= m['pointing'] <= 1
        assert len(m['ap']) == 20
    line = [l for l in text.splitlines()
            if l.startswith('| Energy in mask |')][0]
    assert line.split('|')[4].strip() == '%+.1f' % (
        100 * (mb['energy'] - ma['energy']))
    assert 'fractions' in saved['units']
    assert ma['pointing_curve']['px'] == [0, 1, 1.44, 2, 4, 5, 8, 10, 15]
    with PIL.Image.open(os.path.join(out, 'attention_miou.png')) as im:
        assert im.format == 'PNG' and im.size[0] > 100


def test_cam_flags_reach_the_attention_columns(eval_setup, tmp_path,
                                               monkeypatch):
    """--cam-scales and --flip reach models.class_cams, and the run's
    configuration records them."""
    voc, (a, _) = eval_setup
    seen = []

    def cams(model, x, classes, scales, flip):
        seen.append((tuple(scales), flip))
        return class_cams(model, x, classes, scales, flip)
    monkeypatch.setattr(evaluate, 'class_cams', cams)
    out = str(tmp_path / 'eval')
    run_main(evaluate, ['--dataset', 'voc', '--data-dir', voc, '--split',
                        'val', '--modelfile', a, '--out', out,
                        '--cam-scales', '1', '0.5', '--flip'], monkeypatch)
    assert seen and set(seen) == {((1.0, 0.5), True)}
    with open(os.path.join(out, 'metrics.json')) as f:
        config = json.load(f)['config']
    assert (config['cam_scales'], config['flip']) == ([1.0, 0.5], True)


def test_evaluate_energy_and_per_class_match_numpy(eval_setup, tmp_path,
                                                   monkeypatch):
    """Energy in the mask from Grad-CAMs computed apart, and each class's
    AP (scikit-learn), IoU, pointing games (distance to every class pixel
    written out) and chance from the model's outputs, in numpy."""
    from sklearn.metrics import average_precision_score
    voc, (a, _) = eval_setup
    out = str(tmp_path / 'eval')
    run_main(evaluate, ['--dataset', 'voc', '--data-dir', voc, '--split',
                        'val', '--modelfile', a, '--names', 'm', '--out',
                        out, '--batch-size', '1'], monkeypatch)
    with open(os.path.join(out, 'metrics.json')) as f:
        saved = json.load(f)
    got = saved['models']['m']
    model, _ = load_model(a)
    dataset = get_dataset('voc', voc, 'val')
    energy, pairs, logits, labels, hist = {}, [], [], [], np.zeros((21, 21))
    for img, lbl, image_labels in (dataset[i] for i in range(len(dataset))):
        x = preprocess(img)[None]
        with chainer.using_config('train', False):
            pred = model.segment(x).array[0].argmax(0)
            logits.append(model.classify(x).array[0])
        labels.append(image_labels)
        np.add.at(hist, (lbl[lbl >= 0], pred[lbl >= 0]), 1)
        classes = sorted(set(np.unique(lbl)) - {-1, 0})
        cams = class_cams(model, x, [classes])[0]
        for c, cam in zip(classes, cams):
            with chainer.using_config('train', False):
                alone = normalize_cam(grad_cam(model, x, np.array(
                    [c - 1]))).array[0]
            energy.setdefault(c, []).append(
                alone[lbl == c].sum() / alone[lbl >= 0].sum())
            ys, xs = np.nonzero(lbl == c)
            y, x_ = np.unravel_index(cam.argmax(), cam.shape)
            grid_y, grid_x = np.mgrid[:40, :48]
            to_class = np.sqrt((grid_y[..., None] - ys) ** 2 +
                               (grid_x[..., None] - xs) ** 2).min(-1)
            pairs.append((c, to_class[y, x_], (to_class <= 1.44).mean()))
    assert got['energy'] == pytest.approx(
        np.mean([np.mean(v) for v in energy.values()]), rel=1e-4)
    logits, labels = np.array(logits), np.array(labels)
    for c, name in enumerate(saved['class_names'][1:], 1):
        row = got['per_class'][name]
        mine = [(d, ch) for k, d, ch in pairs if k == c]
        if not mine:
            assert row['pointing_scaled'] is None
            continue
        assert row['pointing_15px'] == np.mean([d <= 15 for d, _ in mine])
        assert row['pointing_scaled'] == np.mean([d <= 1.44 for d, _ in mine])
        assert row['pointing_scaled_chance'] == pytest.approx(
            np.mean([ch for _, ch in mine]))
        assert row['iou'] == pytest.approx(hist[c, c] / (
            hist[c].sum() + hist[:, c].sum() - hist[c, c]))
        assert row['ap'] == pytest.approx(average_precision_score(
            labels[:, c - 1], logits[:, c - 1]), rel=1e-5)


def test_evaluate_compare_unknown_model_is_usage_error(eval_setup, tmp_path,
                                                       monkeypatch, capsys):
    voc, (a, b) = eval_setup
    with pytest.raises(SystemExit) as e:
        run_main(evaluate, ['--dataset', 'voc', '--data-dir', voc,
                            '--modelfile', a, b, '--compare', 'before', 'x',
                            '--out', str(tmp_path / 'e')], monkeypatch)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('error: --compare x') and err.count('\n') == 1


def test_evaluate_and_pseudo_labels_on_image_level_splits(
        weak_voc, modelfile, tmp_path, monkeypatch, capsys):
    """On a joined split the pixel metrics are those of its masked images
    (the segmentation layout of the same split), mAP is over all of its
    images; on a split without masks only mAP is measured. Pseudo labels
    cover every image, their mIoU the masked ones."""
    root, written = weak_voc
    results = {}
    for layout in ('joined', 'segmentation', 'classification'):
        out = str(tmp_path / ('eval_' + layout))
        code, err = run_script('evaluate', [
            '--dataset', 'voc', '--data-dir', root, '--split', 'val',
            '--voc-layout', layout, '--modelfile', modelfile, '--names', 'm',
            '--out', out], monkeypatch, capsys)
        assert code == 0, err
        with open(os.path.join(out, 'metrics.json')) as f:
            results[layout] = json.load(f)['models']['m']
    joined, seg, cls = (results[k] for k in ('joined', 'segmentation',
                                             'classification'))
    for key in ('mean_iu', 'accuracy', 'attention_miou', 'energy'):
        assert joined[key] == seg[key] and joined[key] is not None, key
    assert cls['mean_iu'] is None and 'energy' not in cls
    assert cls['map'] == joined['map']
    # mAP over the 4 images, from their XML labels: numpy, from the logits
    dataset = get_dataset('voc', root, 'val')
    model, _ = load_model(modelfile)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        logits = model.classify(preprocess_batch(
            [dataset[i][0] for i in range(len(dataset))])).array
    labels = np.stack([written[i][2] for i in dataset.ids]).astype(bool)
    aps = []
    for k in np.flatnonzero(labels.any(axis=0)):
        hits = labels[np.argsort(-logits[:, k], kind='stable'), k]
        aps.append((np.cumsum(hits) / np.arange(1, len(hits) + 1))[hits]
                   .mean())
    assert len(dataset) == 4 and len(aps) > 1
    assert joined['map'] == pytest.approx(np.mean(aps), rel=1e-5)
    assert seg['map'] != joined['map']

    reports = {}
    for layout in ('joined', 'segmentation'):
        out = str(tmp_path / ('pseudo_' + layout))
        code, err = run_script('make_pseudo_labels', [
            '--dataset', 'voc', '--data-dir', root, '--split', 'train',
            '--voc-layout', layout, '--modelfile', modelfile, '--out', out],
            monkeypatch, capsys)
        assert code == 0, err
        with open(os.path.join(out, 'pseudo_labels.json')) as f:
            reports[layout] = json.load(f)
        assert len(os.listdir(os.path.join(out, 'SegmentationClass'))) == \
            reports[layout]['images']
    assert reports['joined']['images'] == 7
    assert reports['joined']['images_with_mask'] == 3
    assert reports['joined']['mean_iu'] == reports['segmentation']['mean_iu']


def test_a_fifo_given_to_tau_from_is_one_line_not_a_hang(pipeline, tmp_path):
    fifo = str(tmp_path / 'metrics.json')
    os.mkfifo(fifo)
    try:
        proc = subprocess.run(
            [sys.executable, 'evaluate.py', '--dataset', 'voc', '--data-dir',
             pipeline['voc'], '--split', 'val', '--modelfile',
             pipeline['project'], '--tau-from', fifo, '--out',
             str(tmp_path / 'eval')], cwd=ROOT, env=ENV, capture_output=True,
            text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail('evaluate.py --tau-from FIFO hangs')
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        'error: --tau-from %s: a FIFO, not a regular file' % fifo)


def test_the_summary_fits_100_columns_and_says_where_tau_comes_from(
        tmp_path, monkeypatch, capsys):
    """The printed summary names the split, where the thresholds come from
    (the tune evaluation beside --out, --tau-from, or the scored split
    itself, said plainly) and the written tables, in lines of at most 100
    characters."""
    voc = str(tmp_path / 'VOC')
    write_voc(voc, {'tune': 3, 'test': 3})
    models = save_thin_models(str(tmp_path), ['a_classifier_of_a_rather_'
                                              'long_name', 'gain'])
    monkeypatch.chdir(tmp_path)     # --out relative, as the README's
    runs = 'runs'

    def run(split, out, *extra):
        run_main(evaluate, ['--dataset', 'voc', '--data-dir', voc, '--split',
                            split, '--modelfile'] + models + [
            '--out', out, '--compare', '0', '1'] + list(extra), monkeypatch)
        text = capsys.readouterr().out
        assert max(len(l) for l in text.splitlines()) <= 100, text
        assert 'split %s of voc, 3 images (3 with a mask)' % split in text
        with open(os.path.join(out, 'metrics.json')) as f:
            saved = json.load(f)
        flat = ' '.join(l.strip() for l in text.splitlines())
        assert '%s/metrics.md' % out in flat
        return flat, saved

    tune = os.path.join(runs, 'eval_tune')
    flat, tuned = run('tune', tune)
    assert 'tau: chosen on this split (tune)' in flat
    flat, saved = run('test', os.path.join(runs, 'eval'))
    assert ("tau: each model's best on split tune, from %s/metrics.json "
            "(found beside --out)" % tune) in flat
    assert saved['config']['tau_from'] == tune + '/metrics.json'
    for name, m in saved['models'].items():
        assert m['attention_tuned_tau'] == tuned['models'][name][
            'attention_tau']
    assert re.search(r'gain - a_classifier\S* +[-+]\d', flat)
    flat, saved = run('test', os.path.join(runs, 'other'))
    assert ('tau: chosen on the scored split (test) itself, an optimistic '
            'number: evaluate the same models with --split tune --out %s '
            'first, or pass --tau-from' % os.path.join(runs, 'other_tune')
            ) in flat and saved['config']['tau_from'] is None
    flat, _ = run('test', os.path.join(runs, 'third'), '--tau-from',
                  tune + '/metrics.json')
    assert "tau: each model's best on another evaluation, %s/metrics.json" % (
        tune) in flat
