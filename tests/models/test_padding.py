"""models/padding.py: a padded batch computes as its images alone."""
import chainer
import numpy as np
import pytest

from datasets import pad_examples
from helpers import SIZES, float64_model, observe
from models import cam_from_features, normalize_cam
from training.gain_loss import GAINLoss


def images(seed=0):
    """Three images (n_class 4) of :data:`SIZES`, float64: image 0 with a
    mask, image 1 without one (-1 everywhere), image 2 with a mask and
    pixel supervision (GAIN_ext); image 1 has one class, the others two,
    each class a block of its label map."""
    rng = np.random.RandomState(seed)
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]], np.int32)
    examples = []
    for (h, w), row in zip(SIZES, labels):
        x = rng.normal(0, 60, (3, h, w))
        lbl = np.zeros((h, w), np.int32)
        for k in np.flatnonzero(row):
            y0, x0 = rng.randint(0, h - 12), rng.randint(0, w - 12)
            lbl[y0:y0 + 12, x0:x0 + 12] = k + 1
        lbl[0] = -1
        examples.append([x, lbl, row])
    examples[1][1][:] = -1
    supervised = [False, False, True]
    return [tuple(e) + (s,) for e, s in zip(examples, supervised)]


def test_scores_and_grad_cams_of_mixed_sizes_equal_the_images_alone():
    """Inside each image of a padded batch: the segmentation scores, the
    logits, the Grad-CAM of every class (not normalised, then normalised)
    equal those of the image alone; outside, the CAMs are 0. Every CAM
    here varies and is non-zero on the image's last row and column, where
    the padding would show."""
    model = float64_model(seed=0)
    examples = images()
    x, _, _, _, sizes = pad_examples(examples)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        score = model.segment(x, sizes).array
        logits = model.classify(x, sizes).array
    with chainer.using_config('train', False):
        features = model.features(x, sizes)
        for k in range(3):
            targets = np.full(3, k, np.int32)
            cams = cam_from_features(model, features, targets, x.shape[2:],
                                     sizes=sizes)
            normal = normalize_cam(cams, sizes=sizes).array
            for i, (image, _, _, _) in enumerate(examples):
                h, w = image.shape[1:]
                alone = cam_from_features(model, model.features(image[None]),
                                          targets[:1], (h, w))
                a = alone.array[0]
                assert a.max() > a.min() and a[-1].max() > 0 < a[:, -1].max()
                np.testing.assert_allclose(cams.array[i, :h, :w], a,
                                           rtol=1e-10, atol=1e-14)
                np.testing.assert_allclose(
                    normal[i, :h, :w], normalize_cam(alone).array[0],
                    rtol=1e-9, atol=1e-12)
                assert not cams.array[i, h:].any()
                assert not cams.array[i, :, w:].any()
                assert not normal[i, h:].any() and not normal[i, :, w:].any()
    for i, (image, _, _, _) in enumerate(examples):
        h, w = image.shape[1:]
        with chainer.using_config('train', False), \
                chainer.no_backprop_mode():
            alone_score = model.segment(image[None]).array[0]
            alone_logits = model.classify(image[None]).array[0]
        np.testing.assert_allclose(score[i, :, :h, :w], alone_score,
                                   rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(logits[i], alone_logits, rtol=1e-10)


def test_normalize_cam_takes_each_images_own_pixels():
    """The min-max normalisation of a padded batch's maps, its value and
    its gradient, is that of each image's own pixels alone (here the
    padding's 0 is below every image's minimum), and 0 on the padding."""
    rng = np.random.RandomState(0)
    sizes = np.array([[7, 9], [5, 4]])
    cam = np.zeros((2, 7, 9))
    r = rng.normal(size=cam.shape)
    for i, (h, w) in enumerate(sizes):
        cam[i, :h, :w] = rng.uniform(0.2, 0.9, (h, w))
    x = chainer.Variable(cam)
    out = normalize_cam(x, sizes=sizes)
    chainer.functions.sum(out * r).backward()
    for i, (h, w) in enumerate(sizes):
        alone = chainer.Variable(cam[i:i + 1, :h, :w].copy())
        expected = normalize_cam(alone)
        chainer.functions.sum(expected * r[i:i + 1, :h, :w]).backward()
        np.testing.assert_allclose(out.array[i, :h, :w], expected.array[0],
                                   rtol=1e-12)
        np.testing.assert_allclose(x.grad[i, :h, :w], alone.grad[0],
                                   rtol=1e-12)
        assert not out.array[i, h:].any() and not out.array[i, :, w:].any()
        assert not x.grad[i, h:].any() and not x.grad[i, :, w:].any()


def single_weights(example, am_mode, am_images):
    """The weight of each term of one image alone in the batch's mean:
    L_cl per (image, class), L_seg per labelled pixel, L_am per image with
    a class, L_ext per (CAM, pixel) of the supervised images. Returns
    ``{term: (numerator, denominator)}``; the batch's term is
    ``sum(numerator_i L_i) / sum(denominator_i)``."""
    _, lbl, labels, supervised = example
    labelled = (lbl >= 0).sum()
    cams = (labels.sum() if am_mode == 'per-class' else 1) if \
        labels.any() else 0
    return dict(cl=(1, 1), seg=(labelled, labelled),
                am=(1 if labels.any() or am_images else 0,) * 2,
                ext=((cams * labelled if supervised else 0),) * 2)


@pytest.mark.parametrize('am_mode,cam_grad,negatives', [
    ('per-class', 'activations', False), ('joint', 'full', False),
    ('per-class', 'mask-only', True)])
def test_mixed_sizes_equal_the_images_alone(am_mode, cam_grad, negatives):
    """Loss, terms and every parameter gradient of a padded batch of three
    images (45x61, 32x37, 50x50; with and without masks, one with GAIN_ext)
    equal the weighted combination of the same images in batches of one,
    run unpadded (float64, test mode)."""
    examples = images()
    if negatives:            # image 1 without a class: L_am of its top class
        examples[1] = examples[1][:2] + (np.zeros(3, np.int32), False)
    model = float64_model(seed=0)
    kwargs = dict(am_mode=am_mode, cam_grad=cam_grad,
                  am_on_negatives=negatives)
    every = dict(cl=1.0, am=1.0, seg=1.0, ext=1.0)

    def gradients():
        return {n: p.grad.copy() for n, p in model.namedparams()
                if p.grad is not None}

    batch = pad_examples(examples)
    x, lbl, labels, supervised, sizes = batch
    assert x.shape == (3, 3, 50, 61)
    assert sizes.tolist() == [list(s) for s in SIZES]
    with chainer.using_config('train', False):
        model.cleargrads()
        value, terms = observe(GAINLoss(model, weights=every, **kwargs),
                               *batch)
        value.backward()
        padded = gradients()

        counts = [single_weights(e, am_mode, negatives) for e in examples]
        totals = {t: sum(c[t][1] for c in counts) for t in every}
        expected_terms = dict.fromkeys(every, 0.0)
        expected = {}
        for example, count in zip(examples, counts):
            alone = tuple(np.asarray(a)[None] for a in example)
            assert pad_examples([example])[-1] is None
            _, single = observe(GAINLoss(model, weights=every, **kwargs),
                                *alone)
            for t in every:
                expected_terms[t] += count[t][0] * single[t] / totals[t]
            weights = {t: count[t][0] / totals[t] for t in every}
            model.cleargrads()
            GAINLoss(model, weights=weights, **kwargs)(*alone).backward()
            for name, g in gradients().items():
                expected[name] = expected.get(name, 0) + g
    assert all(terms[t] > 0 for t in every), terms
    for t in every:
        assert terms[t] == pytest.approx(expected_terms[t], rel=1e-9), t
    assert float(value.array) == pytest.approx(
        sum(expected_terms.values()), rel=1e-9)
    assert set(padded) == set(expected) and len(padded) > 30
    for name, g in padded.items():
        scale = np.abs(expected[name]).max()
        assert scale > 0, name
        np.testing.assert_allclose(g, expected[name], rtol=1e-7,
                                   atol=1e-9 * scale, err_msg=name)
