"""make_pseudo_labels.py: VOC-format output, thresholds, report."""
import json
import os
import re
import sys

import chainer
import numpy as np
import PIL.Image
import pytest

import make_pseudo_labels
from datasets import get_dataset, preprocess
from datasets.voc import voc_palette
from helpers import printed_next, run_script, run_script_output, write_voc
from models import FCN8s, class_cams, grad_cam, normalize_cam
from models.crf import CRFSettings, refine
from runtime import cli
from visualizations import pseudo_label_figure
from models.io import load_model, save_model


@pytest.fixture
def setup(tmp_path):
    voc = str(tmp_path / 'VOC')
    written = write_voc(voc, {'train': 4})
    np.random.seed(0)
    model = FCN8s(21, width=1 / 16.)
    model.head_trained_by = ['a test fixture']
    path = str(tmp_path / 'm' / 'model.npz')
    save_model(path, model)
    return voc, written, path


def run_main(argv, monkeypatch):
    monkeypatch.setattr(sys, 'argv', ['make_pseudo_labels.py'] + argv)
    cli.run(make_pseudo_labels.main)


def expected_label(model, img, lbl, low, high, eps=1e-4):
    """The threshold rule, from per-class Grad-CAMs computed one by one,
    and the pixels where float rounding may decide: within ``eps`` of a
    threshold, or with two classes within ``eps`` of each other at the top.
    The script computes its maps in batches, whose rounding differs with
    the BLAS build and the CPU."""
    classes = sorted(set(np.unique(lbl).tolist()) - {0, 255})
    out = np.zeros(lbl.shape, np.uint8)
    if not classes:
        return out, np.zeros(lbl.shape, bool)
    with chainer.using_config('train', False):
        cams = np.stack([normalize_cam(grad_cam(
            model, preprocess(img)[None], np.array([c - 1]))).array[0]
            for c in classes])
    best, arg = cams.max(0), np.array(classes)[cams.argmax(0)]
    out[(best >= low) & (best < high)] = 255
    out[best >= high] = arg[best >= high]
    second = np.sort(cams, 0)[-2] if len(classes) > 1 else best - 1
    uncertain = ((np.abs(best - low) < eps) | (np.abs(best - high) < eps) |
                 ((best >= high - eps) & (best - second < eps)))
    return out, uncertain


def test_pseudo_labels_voc_directory_and_report(setup, tmp_path,
                                                monkeypatch, capsys):
    voc, written, modelfile = setup
    out = str(tmp_path / 'pseudo')
    previews = []

    def figure(rows, class_names, title):
        previews.append(rows)
        return pseudo_label_figure(rows, class_names, title)
    monkeypatch.setattr(make_pseudo_labels, 'pseudo_label_figure', figure)
    run_main(['--dataset', 'voc', '--data-dir', voc, '--split', 'train',
              '--modelfile', modelfile, '--out', out, '--low', '0.3',
              '--high', '0.6', '--batch-size', '3'], monkeypatch)
    printed = re.search(r'mIoU (\d+\.\d) % on the labelled pixels',
                        capsys.readouterr().out)
    with open(os.path.join(out, 'ImageSets', 'Segmentation',
                           'train.txt')) as f:
        assert f.read().split() == sorted(written)

    model, _ = load_model(modelfile)
    source = get_dataset('voc', voc, 'train')
    inter, union = np.zeros(21), np.zeros(21)
    labelled = total = 0
    for i, image_id in enumerate(source.ids):
        img = source[i][0]  # the decoded JPEG, as the script reads it
        gt = written[image_id][1]
        with PIL.Image.open(os.path.join(out, 'SegmentationClass',
                                         image_id + '.png')) as png:
            assert png.mode == 'P'
            assert png.getpalette()[:768] == voc_palette()
            label = np.asarray(png)
        expected, uncertain = expected_label(model, img, gt, 0.3, 0.6)
        assert uncertain.mean() < 0.01
        np.testing.assert_array_equal(label[~uncertain],
                                      expected[~uncertain])
        assert set(label[uncertain].tolist()) <= {0, 255} | set(
            np.unique(gt).tolist())
        src = os.path.join(out, 'JPEGImages', image_id + '.jpg')
        assert os.path.samefile(src, os.path.join(voc, 'JPEGImages',
                                                  image_id + '.jpg'))
        keep = (label != 255) & (gt != 255)
        for c in range(21):
            t, p = keep & (gt == c), keep & (label == c)
            inter[c] += (t & p).sum()
            union[c] += (t | p).sum()
        labelled += (label != 255).sum()
        total += label.size
        # the preview shows the image, its label and its ground truth
        shown_id, shown_img, shown_label, truth = previews[0][i]
        assert shown_id == image_id and np.array_equal(shown_img, img)
        assert np.array_equal(shown_label, label)
        assert np.array_equal(truth, np.where(gt == 255, -1, gt))

    assert 0 < labelled < total  # the three outcomes all occur
    assert inter[1:].sum() + (union[1:] - inter[1:]).sum() > 0
    with open(os.path.join(out, 'pseudo_labels.json')) as f:
        report = json.load(f)
    assert report['mean_iu'] == pytest.approx(
        np.mean(inter[union > 0] / union[union > 0]))
    assert list(report['per_class_iou']) == list(source.class_names)
    assert [report['per_class_iou'][n] for n in source.class_names] == [
        pytest.approx(i / u) if u else None for i, u in zip(inter, union)]
    assert report['labelled_share'] == pytest.approx(labelled / total)
    assert (report['low'], report['high']) == (0.3, 0.6)
    assert printed.group(1) == '%.1f' % (100 * report['mean_iu'])
    assert len(previews) == 1 and len(previews[0]) == len(source.ids)
    with PIL.Image.open(os.path.join(out, 'preview.png')) as png:
        assert png.format == 'PNG' and png.size[0] > 300

    # The output is itself a VOC-format dataset.
    dataset = get_dataset('voc', out, 'train')
    img, lbl, _ = dataset[0]
    assert img.shape == written[dataset.ids[0]][0].shape
    assert set(np.unique(lbl).tolist()) <= {-1, 0} | set(
        np.unique(written[dataset.ids[0]][1]).tolist())


def test_no_ignore_band_when_low_equals_high(setup, tmp_path, monkeypatch):
    voc, written, modelfile = setup
    out = str(tmp_path / 'pseudo')
    run_main(['--dataset', 'voc', '--data-dir', voc, '--split', 'train',
              '--modelfile', modelfile, '--out', out, '--low', '0.5',
              '--high', '0.5'], monkeypatch)
    with open(os.path.join(out, 'pseudo_labels.json')) as f:
        assert json.load(f)['labelled_share'] == 1.0


@pytest.mark.parametrize('extra', [['--low', '0.7', '--high', '0.2'],
                                   ['--crf', '--low', '0.3', '--high', '.6'],
                                   ['--crf', '--crf-tau', '1'],
                                   ['--crf-iterations', '0'],
                                   ['--crf-grid', '--flip'],
                                   ['--cam-scales', '1', '0'],
                                   ['--out-is-data'],
                                   ['--modelfile-missing']])
def test_bad_input_is_one_line_error(setup, tmp_path, monkeypatch, capsys,
                                     extra):
    voc, _, modelfile = setup
    out = str(tmp_path / 'pseudo')
    if extra == ['--out-is-data']:
        extra, out = [], voc
    if extra == ['--modelfile-missing']:
        extra, modelfile = [], str(tmp_path / 'missing.npz')
    with pytest.raises(SystemExit) as e:
        run_main(['--dataset', 'voc', '--data-dir', voc, '--modelfile',
                  modelfile, '--out', out] + extra, monkeypatch)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and err.count('\n') == 1
    assert not os.path.exists(os.path.join(voc, 'pseudo_labels.json'))


def test_crf_and_cam_flags_reach_the_crf(setup, tmp_path, monkeypatch):
    """The CRF gets the flags' settings and the multi-scale flipped CAMs;
    its labels are written and its settings recorded."""
    voc, written, modelfile = setup
    out = str(tmp_path / 'pseudo')
    calls = dict(cams=[], refine=[])

    def cams(model, x, classes, scales, flip):
        calls['cams'].append((tuple(scales), flip))
        return class_cams(model, x, classes, scales, flip)

    def refined(img, cams, classes, settings):
        label = refine(img, cams, classes, settings)
        calls['refine'].append((settings, label))
        return label
    monkeypatch.setattr(make_pseudo_labels, 'class_cams', cams)
    monkeypatch.setattr(make_pseudo_labels, 'refine', refined)
    run_main(['--dataset', 'voc', '--data-dir', voc, '--modelfile',
              modelfile, '--out', out, '--crf-tau', '0.4',
              '--cam-scales', '1', '0.5', '--flip', '--crf',
              '--crf-gauss-sxy', '2', '--crf-gauss-compat', '1',
              '--crf-bilateral-sxy', '7', '--crf-bilateral-srgb', '9',
              '--crf-bilateral-compat', '4', '--crf-iterations', '3'],
             monkeypatch)
    settings = CRFSettings(tau=0.4, gauss_sxy=2., gauss_compat=1.,
                           bilateral_sxy=7., bilateral_srgb=9.,
                           bilateral_compat=4., iterations=3)
    assert set(calls['cams']) == {((1.0, 0.5), True)}
    assert [c[0] for c in calls['refine']] == [settings] * len(written)
    for image_id, (_, label) in zip(sorted(written), calls['refine']):
        with PIL.Image.open(os.path.join(out, 'SegmentationClass',
                                         image_id + '.png')) as png:
            np.testing.assert_array_equal(np.asarray(png), label)
    with open(os.path.join(out, 'pseudo_labels.json')) as f:
        report = json.load(f)
    assert report['crf'] == settings._asdict()
    assert (report['cam_scales'], report['flip']) == ([1.0, 0.5], True)
    assert report['labelled_share'] == 1.0


def test_pseudo_label_loop_trains_and_scores_against_the_truth(
        tmp_path, monkeypatch, capsys):
    """shapes (6 classes) -> pseudo labels -> train_fcn on them, validated
    on the real labels -> evaluate against the ground truth, each step the
    next command that the one before printed."""
    from datasets import shapes
    source = str(tmp_path / 'shapes')
    shapes.generate(source, size=48, n_train=4, n_val=2, n_test=2)
    np.random.seed(0)
    modelfile = str(tmp_path / 'gain' / 'model.npz')
    model = FCN8s(len(shapes.CLASS_NAMES), width=1 / 16.)
    model.head_trained_by = ['a test fixture']
    save_model(modelfile, model)
    pseudo = str(tmp_path / 'pseudo')
    run_main(['--dataset', 'shapes', '--data-dir', source, '--split',
              'train', '--modelfile', modelfile, '--out', pseudo],
             monkeypatch)
    _, [train_fcn] = printed_next(capsys.readouterr().out)
    assert train_fcn[:2] == [cli.python_command(), 'train_fcn.py']
    with open(os.path.join(pseudo, 'class_names.txt')) as f:
        assert tuple(f.read().split()) == shapes.CLASS_NAMES

    fcn_out = pseudo + '_fcn'
    code, out, err = run_script_output('train_fcn', train_fcn[2:] + [
        '--iterations', 2, '--batch-size', 2], monkeypatch, capsys)
    assert code == 0, err
    model, _ = load_model(os.path.join(fcn_out, 'model.npz'))
    assert model.n_class == len(shapes.CLASS_NAMES)
    with open(os.path.join(fcn_out, 'log')) as f:
        assert 'validation/main/loss' in json.load(f)[-1]
    with open(os.path.join(fcn_out, 'config.json')) as f:
        config = json.load(f)
    assert (config['data_dir'], config['val_data_dir']) == (pseudo, source)

    _, [evaluate] = printed_next(out)   # its evaluation, not a classifier
    assert evaluate[1:] == ['evaluate.py', '--no-attention', '--modelfile',
                            os.path.join(fcn_out, 'model.npz'), '--out',
                            fcn_out + '_eval', '--data-dir', source]
    code, err = run_script('evaluate', evaluate[2:], monkeypatch, capsys)
    assert code == 0, err
    with open(os.path.join(fcn_out + '_eval', 'metrics.json')) as f:
        metrics = json.load(f)
    assert metrics['split'] == 'test'
    assert metrics['class_names'] == list(shapes.CLASS_NAMES)
    assert 0 <= metrics['models']['pseudo_fcn']['mean_iu'] <= 1

    # without the real labels the pseudo-label directory has no val split
    code, err = run_script('train_fcn', ['--dataset', 'voc', '--data-dir',
                                         pseudo, '--out', str(tmp_path / 'x'),
                                         '--iterations', 1], monkeypatch,
                           capsys)
    assert code == 2 and "no split file for split 'val'" in err


def test_class_names_file_sets_and_checks_the_classes(tmp_path):
    from datasets import DatasetError, VOC_CLASS_NAMES
    root = str(tmp_path / 'data')
    write_voc(root, {'train': 1})
    assert get_dataset('voc', root, 'train').n_class == 21
    names = ('background', 'a', 'b', 'c')
    with open(os.path.join(root, 'class_names.txt'), 'w') as f:
        f.write('\n'.join(names) + '\n')
    assert get_dataset('voc', root, 'train').class_names == names
    assert get_dataset('voc', root, 'train', names).class_names == names
    with pytest.raises(DatasetError, match='differ from the training'):
        get_dataset('voc', root, 'train', VOC_CLASS_NAMES)
    with open(os.path.join(root, 'class_names.txt'), 'w') as f:
        f.write('background\n')
    with pytest.raises(DatasetError, match='class_names.txt: needs'):
        get_dataset('voc', root, 'train')


def miou(truths, preds, n_class):
    """Mean IoU of pooled pixels, ignore (-1) skipped, classes absent
    from both left out."""
    t, p = np.concatenate([a.ravel() for a in truths]), np.concatenate(
        [a.ravel() for a in preds])
    p = p[t >= 0]
    t = t[t >= 0]
    ious = [((t == c) & (p == c)).sum() / ((t == c) | (p == c)).sum()
            for c in range(n_class) if ((t == c) | (p == c)).any()]
    return np.mean(ious)


def image(cam_value, object_cols, rng):
    """An image whose class-1 object covers ``object_cols`` columns and
    whose CAM is ``cam_value`` there, 0.5 on the next 4 columns, 0.1 on
    the rest."""
    label_map = np.zeros((6, 12), np.int32)
    label_map[:, :object_cols] = 1
    label_map[0, 0] = -1
    cam = np.full((6, 12), 0.1, np.float32)
    cam[:, :object_cols] = cam_value
    cam[:, object_cols:object_cols + 4] = 0.5
    return (rng.randint(0, 256, (6, 12, 3)).astype(np.uint8), label_map,
            cam[None], np.array([1]))


def test_the_first_half_chooses_and_the_second_half_scores():
    """The first half's halo (0.5) is background and wants tau above it;
    the second's is object and would want tau below it."""
    rng = np.random.RandomState(0)
    first = [image(0.9, 4, rng) for _ in range(3)]
    second = [image(0.9, 2, rng) for _ in range(3)]
    for im in second:
        im[1][:, 2:6] = 1
    candidates = [(0.3, None), (0.6, None)]
    row, grid = make_pseudo_labels.choose(first, second, candidates, n_class=2)
    assert row['tau'] == 0.6 and row['crf'] is None
    labels = [np.where(im[2][0] >= t, 1, 0) for t in (0.3, 0.6)
              for im in second]
    truths = [im[1] for im in second]
    assert row['second_half'] == pytest.approx(
        miou(truths, labels[3:], 2))
    assert row['second_half'] < miou(truths, labels[:3], 2)
    assert [g['first_half'] for g in grid] == pytest.approx(
        [miou([im[1] for im in first], [np.where(im[2][0] >= t, 1, 0)
                                        for im in first], 2)
         for t in (0.3, 0.6)])
    assert row['first_half'] == max(g['first_half'] for g in grid)


def test_grid_writes_the_rows_and_flags_it_takes(voc_dir, tmp_path,
                                                 monkeypatch):
    monkeypatch.setattr(make_pseudo_labels, 'CAM_GRID', (
        ('single', (1.0,), False), ('multi_flip', (1.0, 0.5), True)))
    monkeypatch.setattr(make_pseudo_labels, 'TAUS', (0.3, 0.6))
    monkeypatch.setattr(make_pseudo_labels, 'CRF_GRID', (
        CRFSettings(0.4, 3., 3., 10., 13., 10., 3),))
    root = voc_dir
    np.random.seed(0)
    model = FCN8s(21, width=1 / 16.)
    model.head_trained_by = ['a test fixture']
    modelfile = str(tmp_path / 'm' / 'model.npz')
    save_model(modelfile, model)
    out = str(tmp_path / 'grid')
    run_main(['--dataset', 'voc', '--data-dir', root, '--split', 'train',
              '--modelfile', modelfile, '--crf-grid', '--out', out],
             monkeypatch)
    with open(os.path.join(out, 'crf_grid.json')) as f:
        result = json.load(f)
    assert set(result['rows']) == {'single_threshold', 'single_crf',
                                   'multi_flip_threshold', 'multi_flip_crf'}
    assert len(result['grid']) == 2 * (2 + 1)
    row = result['rows']['multi_flip_crf']
    assert row['crf']['bilateral_srgb'] == 13 and row['tau'] == 0.4
    assert result['best'] in result['rows']
    pseudo = str(tmp_path / 'pseudo')
    run_main(['--dataset', 'voc', '--data-dir', root, '--modelfile',
              modelfile, '--out', pseudo] + row['flags'], monkeypatch)
    with open(os.path.join(pseudo, 'pseudo_labels.json')) as f:
        report = json.load(f)
    assert report['crf'] == row['crf']
    assert (report['cam_scales'], report['flip']) == ([1.0, 0.5], True)
