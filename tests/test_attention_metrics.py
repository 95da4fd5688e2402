"""Attention metrics against hand computations, and evaluate.py's
attention columns, curve and --compare."""
import json
import os
import sys

import chainer
import numpy as np
import PIL.Image
import pytest

import evaluate
from helpers import write_voc
from metrics import (AttentionMetrics, average_precision, energy_inside,
                     pointing_hit, pseudo_label)
from metrics.attention import TAUS
from models import FCN8s, class_cams, grad_cam, normalize_cam
from runtime import cli
from runtime.model_files import save_model


def add(metric, lbl, cams, classes):
    metric.add(np.asarray(lbl, np.int32), dict(
        cams=np.asarray(cams, np.float32), cam_classes=np.asarray(classes)))


def two_blob_label():
    """8x8: class 1 top-left, class 2 bottom-right, an ignore band."""
    lbl = np.zeros((8, 8), np.int32)
    lbl[1:4, 1:4] = 1
    lbl[5:8, 4:8] = 2
    lbl[4, :] = -1
    return lbl


# -- attention mIoU -----------------------------------------------------------
@pytest.mark.parametrize('tau', [0.05, 0.3, 0.5, 0.77, 0.95])
def test_cam_equal_to_mask_gives_miou_one(tau):
    lbl = two_blob_label()
    m = AttentionMetrics(n_class=4, tau=tau)
    add(m, lbl, [lbl == 1, lbl == 2], [1, 2])
    r = m.result()
    assert r['attention_miou_fixed'] == 1.0
    assert r['attention_miou'] == 1.0
    assert r['attention_curve']['miou'] == [1.0] * len(TAUS)
    assert r['attention_iu'][:3] == [1.0, 1.0, 1.0]


def test_attention_miou_hand_computed():
    # 1x4 image, truth [bg, c1, c1, bg], CAM of class 1:
    lbl = [[0, 1, 1, 0]]
    cam = [[[0.2, 0.9, 0.4, 0.6]]]
    m = AttentionMetrics(n_class=2, tau=0.5)
    add(m, lbl, cam, [1])
    r = m.result()
    # tau 0.5: pred [0,1,0,1]: IU bg 1/3, c1 1/3.
    assert r['attention_miou_fixed'] == pytest.approx(1 / 3)
    curve = dict(zip(r['attention_curve']['tau'],
                     r['attention_curve']['miou']))
    # tau <= 0.2: all class 1 (0.2 reaches 0.2): bg 0, c1 2/4.
    assert curve[0.05] == curve[0.2] == pytest.approx(0.25)
    # 0.2 < tau <= 0.4: pred [0,1,1,1]: bg 1/2, c1 2/3.
    assert curve[0.25] == curve[0.4] == pytest.approx(7 / 12)
    # 0.6 < tau <= 0.9: pred [0,1,0,0]: bg 2/3, c1 1/2.
    assert curve[0.65] == curve[0.9] == pytest.approx(7 / 12)
    # tau 0.95: all background: bg 2/4, c1 0.
    assert curve[0.95] == pytest.approx(0.25)
    # The first of the tied maxima.
    assert r['attention_tau'] == 0.25
    assert r['attention_miou'] == pytest.approx(7 / 12)


def test_attention_sweep_matches_direct_thresholding():
    rng = np.random.RandomState(0)
    n_class, images = 5, []
    m = AttentionMetrics(n_class, tau=0.45)
    for _ in range(4):
        lbl = rng.randint(-1, n_class, (6, 7))
        classes = np.sort(rng.choice(np.arange(1, n_class), 2, replace=False))
        cams = rng.rand(2, 6, 7).astype(np.float32)
        add(m, lbl, cams, classes)
        images.append((lbl, cams, classes))
    r = m.result()

    def miou(tau):
        inter, union = np.zeros(n_class), np.zeros(n_class)
        for lbl, cams, classes in images:
            pred = np.where(cams.max(0) >= np.float32(tau),
                            classes[cams.argmax(0)], 0)
            valid = lbl >= 0
            for c in range(n_class):
                t, p = (lbl == c) & valid, (pred == c) & valid
                inter[c] += (t & p).sum()
                union[c] += (t | p).sum()
        return np.mean(inter[union > 0] / union[union > 0])

    assert r['attention_curve']['miou'] == pytest.approx(
        [miou(t) for t in TAUS])
    assert r['attention_miou_fixed'] == pytest.approx(miou(0.45))
    assert r['attention_miou'] == pytest.approx(max(miou(t) for t in TAUS))


def test_image_without_classes_is_all_background():
    m = AttentionMetrics(n_class=3, tau=0.5)
    add(m, [[0, 0, 1]], np.zeros((0, 1, 3)), [])
    r = m.result()
    # pred all 0: IU bg 2/3, c1 0.
    assert r['attention_miou_fixed'] == pytest.approx(1 / 3)
    assert r['energy'] is None and r['pointing'] is None


# -- energy and pointing game -------------------------------------------------
def test_cam_on_background_gives_zero_energy_and_pointing():
    lbl = two_blob_label()
    m = AttentionMetrics(n_class=4)
    add(m, lbl, [lbl == 0, lbl == 0], [1, 2])
    r = m.result()
    assert r['energy'] == 0.0 and r['pointing'] == 0.0
    assert r['energy_class'][:2] == [0.0, 0.0]
    assert r['pointing_class'][:2] == [0.0, 0.0]
    assert r['pointing_counted'] == 2


def test_energy_and_pointing_hand_computed():
    lbl = np.array([[1, 1, 0, 0],
                    [-1, 0, 0, 0],
                    [0, 0, 2, 2],
                    [-1, -1, -1, -1]], np.int32)
    a = np.zeros((4, 4), np.float32)       # class 1, peak on class 1
    a[0, 0], a[0, 1], a[0, 2], a[1, 0] = 1.0, 0.5, 0.5, 0.9
    # energy: (1 + .5) / (1 + .5 + .5) on non-ignore pixels = 0.75
    assert energy_inside(a, lbl, 1) == pytest.approx(0.75)
    assert pointing_hit(a, lbl, 1) is True
    b = np.zeros((4, 4), np.float32)       # class 1, peak on background
    b[2, 1], b[0, 0] = 0.8, 0.2
    assert energy_inside(b, lbl, 1) == pytest.approx(0.2)
    assert pointing_hit(b, lbl, 1) is False
    c = np.zeros((4, 4), np.float32)       # class 2, peak on ignore near it
    c[3, 3], c[2, 2] = 1.0, 0.25
    assert energy_inside(c, lbl, 2) == pytest.approx(1.0)
    assert pointing_hit(c, lbl, 2) is True
    assert pointing_hit(c, lbl, 2, tolerance=0) is None  # not counted
    assert pointing_hit(np.zeros((4, 4)), lbl, 2) is False  # flat: miss
    assert energy_inside(np.zeros((4, 4)), lbl, 2) == 0.0

    m = AttentionMetrics(n_class=3, tolerance=0)
    add(m, lbl, [a, b], [1, 1])
    add(m, lbl, [c], [2])
    r = m.result()
    assert r['energy_class'] == pytest.approx([(0.75 + 0.2) / 2, 1.0])
    assert r['energy'] == pytest.approx(((0.75 + 0.2) / 2 + 1.0) / 2)
    assert r['pointing_class'][0] == 0.5 and r['pointing_class'][1] is None
    assert r['pointing'] == 0.5 and r['pointing_counted'] == 2


def test_average_precision_hand_computed():
    ap = average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])
    assert ap == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([0.1, 0.9], [1, 0]) == pytest.approx(0.5)


def test_pseudo_label_thresholds():
    cams = np.array([[[0.1, 0.35, 0.7, 0.2, 0.3, 0.6]],
                     [[0.2, 0.1, 0.65, 0.9, 0.1, 0.0]]], np.float32)
    out = pseudo_label(cams, [3, 5], low=0.3, high=0.6)
    assert out.dtype == np.uint8
    # the bounds: == low is ignore, == high takes the class
    assert out.tolist() == [[0, 255, 3, 5, 255, 3]]
    assert pseudo_label(cams[:0], [], 0.3, 0.6).tolist() == [[0] * 6]


# -- class_cams ---------------------------------------------------------------
def test_class_cams_matches_per_pair_grad_cam(thin_model):
    x = np.random.RandomState(0).uniform(-50, 50, (3, 3, 32, 40)).astype(
        np.float32)
    classes = [np.array([1, 3]), np.array([], int), np.array([2])]
    cams = class_cams(thin_model, x, classes)
    assert [c.shape for c in cams] == [(2, 32, 40), (0, 32, 40),
                                       (1, 32, 40)]
    for i, cls in enumerate(classes):
        for j, c in enumerate(cls):
            with chainer.using_config('train', False):
                ref = normalize_cam(grad_cam(thin_model, x[i:i + 1],
                                             np.array([c - 1]))).array[0]
            np.testing.assert_allclose(cams[i][j], ref, atol=1e-5)
            assert 0 <= cams[i][j].min() and cams[i][j].max() <= 1
    assert all(c.shape[0] == 0 for c in
               class_cams(thin_model, x, [[], [], []]))


# -- evaluate.py --------------------------------------------------------------
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
    text = capsys.readouterr().out
    header = text.splitlines()[0]
    for title in ('Mean IU', 'mAP', 'Attention mIoU', 'best tau',
                  'Attention mIoU @0.50', 'Energy', 'Pointing'):
        assert title in header
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
    assert line.split('|')[4].strip() == '%+.2f' % (
        100 * (mb['energy'] - ma['energy']))
    with PIL.Image.open(os.path.join(out, 'attention_miou.png')) as im:
        assert im.format == 'PNG' and im.size[0] > 100


def test_evaluate_energy_matches_independent_cams(eval_setup, tmp_path,
                                                  monkeypatch):
    voc, (a, _) = eval_setup
    out = str(tmp_path / 'eval')
    run_main(evaluate, ['--dataset', 'voc', '--data-dir', voc, '--split',
                        'val', '--modelfile', a, '--names', 'm', '--out',
                        out], monkeypatch)
    with open(os.path.join(out, 'metrics.json')) as f:
        got = json.load(f)['models']['m']
    from datasets import get_dataset, preprocess
    from runtime.model_files import load_model
    model, _ = load_model(a)
    dataset = get_dataset('voc', voc, 'val')
    per_class = {}
    for img, lbl, _ in (dataset[i] for i in range(len(dataset))):
        for c in set(np.unique(lbl)) - {-1, 0}:
            with chainer.using_config('train', False):
                cam = normalize_cam(grad_cam(model, preprocess(img)[None],
                                             np.array([c - 1]))).array[0]
            valid = lbl >= 0
            per_class.setdefault(c, []).append(
                cam[lbl == c].sum() / cam[valid].sum())
    expected = np.mean([np.mean(v) for v in per_class.values()])
    assert got['energy'] == pytest.approx(expected, rel=1e-4)


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


# -- the literature's pointing game and energy-based pointing ---------------
def test_zhang_tolerance_scales_with_the_image():
    from metrics.attention import zhang_tolerance
    assert zhang_tolerance((375, 500)) == pytest.approx(15.0)
    assert zhang_tolerance((96, 96)) == pytest.approx(2.88)


def test_pointing_within_tolerance_hand_computed():
    from metrics.attention import pointing_hit_within
    lbl = np.zeros((20, 20), np.int32)
    lbl[10:14, 10:14] = 2
    lbl[9, 9:15] = -1                     # an ignore band above it
    cam = np.zeros((20, 20), np.float32)
    cam[7, 12] = 1.0                      # 3 px above the class
    assert pointing_hit_within(cam, lbl, 2, 3.0) is True
    assert pointing_hit_within(cam, lbl, 2, 2.9) is False
    cam[:] = 0
    cam[8, 8] = 1.0                       # diagonal: sqrt(8) = 2.83 px
    assert pointing_hit_within(cam, lbl, 2, 2.88) is True
    assert pointing_hit_within(cam, lbl, 2, 2.8) is False
    cam[:] = 0
    cam[11, 11] = 1.0                     # on the class
    assert pointing_hit_within(cam, lbl, 2, 0) is True
    assert pointing_hit_within(cam, lbl, 3, 100) is False   # absent class
    assert pointing_hit_within(np.zeros((20, 20)), lbl, 2, 100) is False


def test_energy_in_box_hand_computed():
    from metrics.attention import class_box, energy_in_box
    lbl = np.zeros((6, 6), np.int32)
    lbl[1, 1], lbl[3, 2] = 1, 1          # box rows 1..3, cols 1..2
    lbl[0, 0] = -1                        # ignore pixels count too
    assert class_box(lbl, 1) == (1, 1, 3, 2)
    cam = np.zeros((6, 6), np.float32)
    cam[2, 2], cam[0, 0], cam[5, 5] = 3.0, 1.0, 1.0   # 3 of 5 in the box
    assert energy_in_box(cam, lbl, 1) == pytest.approx(0.6)
    assert energy_in_box(cam, lbl, 2) == 0.0
    assert energy_in_box(np.zeros((6, 6)), lbl, 1) == 0.0


def test_every_pair_counts_in_the_standard_pointing_game():
    """A peak on an ignore pixel far from its class is not counted by the
    exact variant but is a miss of the standard game."""
    lbl = np.zeros((30, 30), np.int32)
    lbl[2:6, 2:6] = 1
    lbl[20:25, :] = -1
    cam = np.zeros((30, 30), np.float32)
    cam[22, 22] = 1.0
    m = AttentionMetrics(n_class=2)
    add(m, lbl, [cam], [1])
    r = m.result()
    assert r['pointing'] is None and r['pointing_counted'] == 0
    assert r['pointing_15px'] == 0.0 and r['cam_pairs'] == 1


def test_split_figures_recomputed_from_weighted_images():
    """attention_scores with weights equals the accumulator fed with the
    images repeated that many times."""
    from metrics.attention import attention_scores
    rng = np.random.RandomState(3)
    images = []
    for _ in range(4):
        lbl = rng.randint(-1, 3, (9, 9)).astype(np.int32)
        classes = np.flatnonzero(np.isin([1, 2], lbl)) + 1
        images.append((lbl, rng.rand(len(classes), 9, 9), classes))
    once, repeated = AttentionMetrics(3), AttentionMetrics(3)
    weights = [2, 0, 1, 3]
    for (lbl, cams, classes), w in zip(images, weights):
        add(once, lbl, cams, classes)
        for _ in range(w):
            add(repeated, lbl, cams, classes)
    got = attention_scores(once.per_image(), np.array(weights))
    want = repeated.result()
    for key in ('attention_miou', 'attention_miou_fixed', 'pointing_15px',
                'energy_box', 'energy', 'cam_pairs'):
        assert got[key] == pytest.approx(want[key]), key
    assert got['attention_curve']['miou'] == pytest.approx(
        want['attention_curve']['miou'])
