"""Mixed supervision: batches of images with a mask and images with
image-level labels only. L_cl and L_am take every image, L_seg and L_ext
only the (pixel-)supervised ones; GAIN_ext's images are drawn among the
masked ones; the scripts take such splits."""
import json
import os

import chainer
import numpy as np
import pytest
from chainer.dataset import concat_examples

from datasets import (PixelSupervisionFlag, get_dataset, preprocess_batch,
                      training_data)
from helpers import observe, run_script
from models import FCN8s, cam_from_features, normalize_cam
from train_GAIN import pick_ext_images
from runtime.errors import UsageError
from runtime.model_files import load_model, save_model
from training.gain_loss import GAINLoss

ONLY = dict(cl=0.0, am=0.0, seg=0.0, ext=0.0)
MASKED = np.array([True, False, True, False])    # images 1 and 3: no mask


def mixed_batch(size=48, seed=0):
    """Four images (n_class 4), each class a 16x16 block in its label map;
    images 1 and 3 have no mask (-1 everywhere); image 0 alone carries
    pixel supervision for L_ext."""
    rng = np.random.RandomState(seed)
    labels = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 1], [0, 0, 1]], np.int32)
    x = rng.normal(0, 60, (4, 3, size, size)).astype(np.float32)
    lbl = np.zeros((4, size, size), np.int32)
    for i, row in enumerate(labels):
        for k in np.nonzero(row)[0]:
            y0, x0 = rng.randint(0, size - 16, 2)
            lbl[i, y0:y0 + 16, x0:x0 + 16] = k + 1
    lbl[:, 0] = -1
    lbl[~MASKED] = -1
    ext = np.array([True, False, False, False])
    return x, lbl, labels, ext


def numpy_softmax_cross_entropy(score, lbl, images):
    """Mean of -log softmax(score)[label] over the labelled pixels of
    ``images``: numpy, from the score maps ``(N, C, H, W)``."""
    total, count = 0.0, 0
    for i in images:
        s = score[i].astype(np.float64)
        log_p = s - s.max(axis=0) - np.log(np.exp(s - s.max(axis=0)).sum(0))
        ys, xs = np.nonzero(lbl[i] >= 0)
        total -= log_p[lbl[i][ys, xs], ys, xs].sum()
        count += len(ys)
    return total / count


def input_grad(model, weights, data):
    x = chainer.Variable(data[0].copy())
    model.cleargrads()
    GAINLoss(model, weights=weights)(x, *data[1:]).backward()
    return x.grad


def test_mixed_batch_seg_and_ext_over_supervised_samples_only(thin_model):
    """L_seg is the numpy cross-entropy over the labelled pixels of the two
    masked images, L_ext the numpy squared error over those of the one
    GAIN_ext image; the other images get exactly zero gradient from each,
    the supervised ones a non-zero one."""
    data = mixed_batch()
    x, lbl, labels, ext = data
    with chainer.using_config('train', False):
        _, terms = observe(GAINLoss(thin_model, weights=dict(
            cl=1.0, am=1.0, seg=1.0, ext=1.0)), *data)
        score = thin_model.segment(x).array
        rows, cls = np.nonzero(labels)
        onehot = np.eye(3, dtype=np.float32)[cls]
        cams = normalize_cam(cam_from_features(
            thin_model, thin_model.features(x)[rows], onehot,
            x.shape[2:])).array
        g_seg = input_grad(thin_model, dict(ONLY, seg=1.0), data)
        g_ext = input_grad(thin_model, dict(ONLY, ext=1.0), data)

    expected_seg = numpy_softmax_cross_entropy(score, lbl, [0, 2])
    assert terms['seg'] == pytest.approx(expected_seg, rel=1e-5)
    squared, weight = 0.0, 0.0
    for cam, row, c in zip(cams, rows, cls):
        if ext[row]:
            valid = lbl[row] >= 0
            target = lbl[row] == c + 1
            squared += ((cam - target)[valid].astype(np.float64) ** 2).sum()
            weight += valid.sum()
    assert terms['ext'] == pytest.approx(squared / weight, rel=1e-5)

    for i in range(4):
        assert (np.abs(g_seg[i]).max() > 0) == MASKED[i], i
        assert (np.abs(g_ext[i]).max() > 0) == ext[i], i
    assert not g_seg[~MASKED].any() and not g_ext[~ext].any()


def test_cl_and_am_take_every_image_whatever_its_mask(thin_model):
    """L_cl and L_am are the same with or without the masks, and L_am's
    gradient reaches the images without one."""
    x, lbl, labels, ext = mixed_batch()
    weights = dict(cl=1.0, am=1.0, seg=0.0, ext=0.0)
    no_masks = np.full_like(lbl, -1)
    with chainer.using_config('train', False):
        _, with_masks = observe(GAINLoss(thin_model, weights=weights),
                                x, lbl, labels, ext)
        _, without = observe(GAINLoss(thin_model, weights=weights),
                             x, no_masks, labels, ext)
        g_am = input_grad(thin_model, dict(ONLY, am=1.0),
                          (x, lbl, labels, ext))
    assert with_masks['cl'] == without['cl'] > 0
    assert with_masks['am'] == without['am'] > 0
    assert all(np.abs(g_am[i]).max() > 0 for i in range(4))


def test_batch_without_masks_has_zero_seg_and_ext(thin_model):
    """chainer's softmax cross-entropy over no labelled pixel is 0 with a
    zero gradient (not NaN), and so is L_ext without supervised pixels."""
    x, lbl, labels, ext = mixed_batch()
    lbl[:] = -1
    with chainer.using_config('train', False):
        value, terms = observe(GAINLoss(thin_model, weights=dict(
            cl=1.0, am=1.0, seg=1.0, ext=1.0)), x, lbl, labels, ext)
        g = input_grad(thin_model, dict(ONLY, seg=1.0, ext=1.0),
                       (x, lbl, labels, ext))
    assert terms['seg'] == 0 and terms['ext'] == 0
    assert terms['cl'] > 0 and terms['am'] > 0
    assert np.isfinite(float(value.array))
    assert np.isfinite(g).all() and not g.any()


def test_batches_from_a_joined_split_mix_both_kinds(weak_voc):
    """A batch of the training view of a joined split stacks images with
    and without a mask; its L_seg is that of its masked images alone."""
    root, _ = weak_voc
    train = get_dataset('voc', root, 'train')
    ext = pick_ext_images(train.has_mask, 2, seed=0)
    examples = PixelSupervisionFlag(training_data(train), ext)
    batch = concat_examples([examples[i] for i in (0, 3, 1, 4)])
    x, lbl, labels, supervised = batch
    assert x.shape == (4, 3, 40, 48) and labels.shape == (4, 20)
    assert [(m >= 0).any() for m in lbl] == [True, False, True, False]
    assert not supervised[[1, 3]].any()
    np.random.seed(0)
    model = FCN8s(21, 1 / 16.)
    loss = GAINLoss(model, weights=dict(ONLY, seg=1.0))
    with chainer.using_config('train', False):
        mixed = float(loss(*batch).array)
        alone = float(loss(*(a[[0, 2]] for a in batch)).array)
    assert mixed == pytest.approx(alone, rel=1e-6) and mixed > 0


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


# -- the scripts on a joined split --------------------------------------------
@pytest.fixture
def modelfile(tmp_path):
    np.random.seed(0)
    model = FCN8s(21, 1 / 16.)
    model.head_trained_by = ['a test fixture']
    path = str(tmp_path / 'start.npz')
    save_model(path, model)
    return path


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


def test_train_fcn_takes_only_masked_images(weak_voc, tmp_path, monkeypatch,
                                            capsys):
    root, _ = weak_voc
    common = ['--dataset', 'voc', '--data-dir', root, '--iterations', 1,
              '--batch-size', 2]
    code, err = run_script('train_fcn', common + [
        '--out', str(tmp_path / 'fcn')], monkeypatch, capsys)
    assert code == 0, err
    assert "--split 'train': using the 3 of its 7 images that have a mask" \
        in err
    assert "--val-split 'val': using the 2 of its 4 images" in err
    code, err = run_script('train_fcn', common + [
        '--voc-layout', 'classification', '--out', str(tmp_path / 'none')],
        monkeypatch, capsys)
    assert code == 2 and 'none of its 7 images has a mask' in err
    assert not os.path.exists(str(tmp_path / 'none'))


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
