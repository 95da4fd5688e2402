"""training/gain_loss.py: the GAIN objective, its terms and gradients."""
import copy

import chainer
import chainer.functions as F
import numpy as np
import pytest

from bench.dtypes import check_step
from helpers import (LR, ONLY, PARAMS, assert_close, data, float64_model,
                     gain_grads, gpu_device, numpy_softmax_cross_entropy,
                     observe, on_gpu, to_cpu)
from models import cam_from_features, normalize_cam
from models.fcn8s import CLASSIFICATION_HEAD, TRUNK
from training.gain_loss import AM_MODES, CAM_GRADS, GAINLoss, parse_warmup
from training.trainer import make_optimizer
from training.updaters import GAINUpdater


def batch(labels, size=48, seed=0):
    """Images, label maps holding each labelled class as a block, labels
    and the pixel-supervision flags (all True)."""
    rng = np.random.RandomState(seed)
    labels = np.asarray(labels, dtype=np.int32)
    n = len(labels)
    x = rng.normal(0, 60, (n, 3, size, size)).astype(np.float32)
    lbl = np.zeros((n, size, size), dtype=np.int32)
    for i, row in enumerate(labels):
        for k in np.nonzero(row)[0]:
            y0, x0 = rng.randint(0, size - 16, 2)
            lbl[i, y0:y0 + 16, x0:x0 + 16] = k + 1
    lbl[:, 0] = -1
    return x, lbl, labels, np.ones(n, dtype=bool)


def grads(model, loss_fn, data):
    model.cleargrads()
    loss_fn(*data).backward()
    return {name: None if p.grad is None else p.grad.copy()
            for name, p in model.namedparams()}


def trunk_grads_nonzero(g):
    return all(g['/%s/W' % n] is not None and np.abs(g['/%s/W' % n]).max() > 0
               for n in TRUNK)


@pytest.mark.parametrize('term,cam_grad', [
    (term, mode) for term in ('am', 'ext')
    for mode in ('activations', 'full', 'mask-only')] + [
    ('seg', 'activations')])  # L_seg does not use the attention map
def test_each_term_alone_reaches_the_trunk(thin_model, term, cam_grad):
    loss = GAINLoss(thin_model, cam_grad=cam_grad,
                    weights=dict(ONLY, **{term: 1.0}))
    data = batch([[1, 0, 0], [0, 1, 1]])
    with chainer.using_config('train', False):
        g = grads(thin_model, loss, data)
    assert trunk_grads_nonzero(g), term


def test_full_differs_from_activations(thin_model):
    """Double back-propagation differentiates the Grad-CAM weights. Through
    this head (max pooling, ReLU, linear) they are piecewise constant in A,
    so their extra gradient reaches the head parameters (frozen in GAIN)
    while the trunk gradient stays that of 'activations'."""
    data = batch([[1, 0, 0], [0, 1, 1]])
    with chainer.using_config('train', False):
        for term in ('am', 'ext'):
            weights = dict(ONLY, **{term: 1.0})
            g_act = grads(thin_model, GAINLoss(thin_model, weights=weights,
                                               cam_grad='activations'), data)
            g_full = grads(thin_model, GAINLoss(thin_model, weights=weights,
                                                cam_grad='full'), data)
            for name in ('/fc6_cl/W', '/fc7_cl/W', '/score_cl/W'):
                if term == 'ext':  # no attention-mining pass: only 'full'
                    assert g_act[name] is None, name
                    assert np.abs(g_full[name]).max() > 0, name
                else:
                    assert not np.allclose(g_act[name], g_full[name]), name
            for n in TRUNK:
                w = '/%s/W' % n
                np.testing.assert_allclose(g_full[w], g_act[w], rtol=1e-4,
                                           atol=1e-6 * np.abs(g_act[w]).max())


def test_mask_only_drops_the_attention_mining_pass(thin_model):
    """Under mask-only, L_am's gradient equals that of an independent
    computation in which the attention-mining pass runs on a frozen copy of
    the network: only the path through the mask remains (L_am averaged
    over the (image, class) pairs, as the reference does)."""
    x, lbl, labels, ext = batch([[1, 0, 0], [0, 1, 1]])
    weights = dict(ONLY, am=1.0)
    with chainer.using_config('train', False):
        g = grads(thin_model, GAINLoss(thin_model, cam_grad='mask-only',
                                       weights=weights, am_average='pair'),
                  (x, lbl, labels, ext))
        g_act = grads(thin_model, GAINLoss(thin_model, weights=weights),
                      (x, lbl, labels, ext))

        frozen = copy.deepcopy(thin_model)
        thin_model.cleargrads()
        rows, cls = np.nonzero(labels)
        onehot = np.eye(labels.shape[1], dtype=np.float32)[cls]
        cam = normalize_cam(cam_from_features(
            thin_model, thin_model.features(x)[rows], onehot, x.shape[2:]))
        mask = F.sigmoid(10.0 * (cam - 0.5))      # T(A), sigma 0.5
        erased = x[rows] - F.broadcast_to(mask[:, None], x[rows].shape) * \
            x[rows]
        scores = F.sigmoid(frozen.classify(erased))
        F.mean(F.sum(scores * onehot, axis=1)).backward()
    for name, p in thin_model.namedparams():
        if g[name] is None:
            assert p.grad is None or not p.grad.any(), name
        else:
            np.testing.assert_allclose(g[name], p.grad, rtol=1e-4,
                                       atol=1e-6 * np.abs(p.grad).max())
    assert not np.allclose(g['/conv1_1/W'], g_act['/conv1_1/W'])


def test_per_class_equals_joint_on_one_label_images(thin_model):
    data = batch([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    weights = dict(cl=1.0, am=1.0, seg=1.0, ext=1.0)
    values = {}
    for mode in ('per-class', 'joint'):
        loss = GAINLoss(thin_model, am_mode=mode, weights=weights)
        np.random.seed(0)  # dropout draws
        with chainer.using_config('train', True):
            values[mode] = observe(loss, *data)[1]
    assert values['per-class'] == values['joint']
    assert values['joint']['am'] > 0 and values['joint']['ext'] > 0


def test_frozen_head_runs_without_dropout(thin_model):
    """In train mode the L_cl and attention-mining passes through the frozen
    head are deterministic unless head_dropout; the Grad-CAM never draws."""
    data = batch([[1, 0, 0], [0, 1, 1]])
    for head_dropout in (False, True):
        loss = GAINLoss(thin_model, weights=dict(cl=1, am=1, seg=0, ext=0),
                        head_dropout=head_dropout)
        with chainer.using_config('train', True):
            first, second = (observe(loss, *data)[1] for _ in range(2))
        assert (first == second) != head_dropout, (first, second)


def test_images_without_foreground(thin_model):
    x, lbl, labels, ext = batch([[0, 0, 0], [0, 1, 0]])
    lbl[0] = 0
    for mode in ('per-class', 'joint'):
        loss = GAINLoss(thin_model, am_mode=mode,
                        weights=dict(cl=1, am=1, seg=1, ext=1))
        value, terms = observe(loss, x[:1], lbl[:1], labels[:1], ext[:1])
        value.backward()
        assert terms['am'] == 0 and terms['ext'] == 0 and terms['cl'] > 0
        value, terms = observe(loss, x, lbl, labels, ext)
        assert terms['ext'] > 0
        assert np.isfinite(float(value.array))


def test_ext_only_on_supervised_images(thin_model):
    x, lbl, labels, ext = batch([[1, 0, 0], [0, 1, 0]])
    loss = GAINLoss(thin_model, weights=dict(ONLY, ext=1.0))
    with chainer.using_config('train', False):
        both = float(loss(x, lbl, labels, ext).array)
        first = float(loss(x, lbl, labels, np.array([True, False])).array)
        alone = float(loss(x[:1], lbl[:1], labels[:1], ext[:1]).array)
        none = float(loss(x, lbl, labels, np.zeros(2, bool)).array)
    assert first == pytest.approx(alone, rel=1e-5)
    assert first != pytest.approx(both) and none == 0


def test_head_is_bit_identical_after_gain_steps(thin_model):
    head = {n: p.array.copy() for n, p in thin_model.namedparams()
            if n.split('/')[1] in CLASSIFICATION_HEAD}
    trunk = thin_model.conv3_1.W.array.copy()
    x, lbl, labels, ext = batch([[1, 0, 0], [0, 1, 1], [0, 0, 1]])
    data = list(zip(x, lbl, labels, ext))
    loss = GAINLoss(thin_model, cam_grad='full',
                    weights=dict(cl=1, am=1, seg=1, ext=1))
    optimizer = make_optimizer(loss, 1e-3, thin_model.head_links())
    it = chainer.iterators.SerialIterator(data, 2)
    updater = GAINUpdater(it, optimizer)
    for _ in range(3):
        updater.update()
    for n, p in thin_model.namedparams():
        if n in head:
            assert np.array_equal(p.array, head[n]), n
    assert not np.array_equal(thin_model.conv3_1.W.array, trunk)


def test_warmup_turns_terms_off(thin_model):
    data = batch([[1, 0, 0], [0, 1, 0]])
    loss = GAINLoss(thin_model, weights=dict(ONLY, am=1.0, ext=1.0),
                    am_warmup=(2, 'iteration'), ext_warmup=(0.5, 'epoch'))
    loss.progress = dict(iteration=1, epoch=0.1)
    with chainer.using_config('train', False):
        assert float(loss(*data).array) == 0
        loss.progress = dict(iteration=2, epoch=0.1)
        am_only = float(loss(*data).array)
        loss.progress = dict(iteration=2, epoch=0.5)
        both = float(loss(*data).array)
    assert 0 < am_only < both
    assert parse_warmup('100') == (100, 'iteration')
    assert parse_warmup('2e') == (2.0, 'epoch')
    with pytest.raises(ValueError):
        parse_warmup('-1')


@pytest.mark.parametrize('am_mode', ['per-class', 'joint'])
def test_attention_mining_averages_per_image_or_per_pair(thin_model, am_mode):
    """L_am against a numpy computation: the sigmoid score of each erased
    class on its erased image, averaged over each image's classes and then
    over the images ('image', the paper's eq. 4), or over every (image,
    class) pair ('pair')."""
    x, lbl, labels, ext = batch([[1, 0, 1], [0, 1, 0], [0, 0, 0]])
    sigma, omega = 0.5, 10.0

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    with chainer.using_config('train', False):
        feats = thin_model.features(x).array
        scores = {}                    # (image, class) -> erased score
        for i, row in enumerate(labels):
            classes = np.flatnonzero(row)
            if not len(classes):
                continue
            targets = (np.eye(3, dtype=np.float32)[classes]
                       if am_mode == 'per-class' else row[None])
            cams = normalize_cam(cam_from_features(
                thin_model, np.repeat(feats[i:i + 1], len(targets), 0),
                targets.astype(np.float32), (48, 48))).array
            for cam, target in zip(cams, targets):
                mask = sigmoid(omega * (cam - sigma))
                erased = (x[i] - mask[None] * x[i])[None]
                logits = thin_model.classify(erased).array[0]
                for c in np.flatnonzero(target):
                    scores[i, c] = sigmoid(logits[c])
        per_image = np.mean([np.mean([v for (i, c), v in scores.items()
                                      if i == image]) for image in (0, 1)])
        per_pair = np.mean(list(scores.values()))
        assert abs(per_image - per_pair) > 1e-3   # the two differ here
        for average, expected in (('image', per_image), ('pair', per_pair)):
            loss = GAINLoss(thin_model, am_mode=am_mode, am_average=average,
                            weights=dict(ONLY, am=1.0))
            _, terms = observe(loss, x, lbl, labels, ext)
            assert terms['am'] == pytest.approx(expected, rel=1e-5), average


@pytest.mark.parametrize('am_mode', ['per-class', 'joint'])
def test_attention_mining_on_negatives(thin_model, am_mode):
    """With am_on_negatives an image without a label is erased where the
    Grad-CAM of its top-scoring class looks, and that class's sigmoid score
    on the erased image joins L_am as one more image (numpy mask and
    erasure, chainer forward passes); without it the image adds nothing.
    L_ext never takes the negative's CAM, even where it is supervised."""
    x, lbl, labels, ext = batch([[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    lbl[1] = 0                         # a background-only mask
    sigma, omega = 0.5, 10.0

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    with chainer.using_config('train', False):
        feats = thin_model.features(x).array
        logits = thin_model.classify(x).array
        per_image = {}
        for i, row in enumerate(labels):
            classes = (np.flatnonzero(row) if row.any() else
                       [int(np.argmax(logits[i]))])
            targets = (np.eye(3, dtype=np.float32)[classes]
                       if am_mode == 'per-class' or not row.any()
                       else row[None].astype(np.float32))
            cams = normalize_cam(cam_from_features(
                thin_model, np.repeat(feats[i:i + 1], len(targets), 0),
                targets, (48, 48))).array
            scores = []
            for cam, target in zip(cams, targets):
                erased = (x[i] - sigmoid(omega * (cam - sigma))[None] *
                          x[i])[None]
                z = thin_model.classify(erased).array[0]
                scores += [sigmoid(z[c]) for c in np.flatnonzero(target)]
            per_image[i] = np.mean(scores)
        values = {}
        for negatives in (False, True):
            loss = GAINLoss(thin_model, am_mode=am_mode,
                            am_on_negatives=negatives,
                            weights=dict(ONLY, am=1.0, ext=1.0))
            values[negatives] = observe(loss, x, lbl, labels, ext)[1]
            xv = chainer.Variable(x.copy())
            GAINLoss(thin_model, am_mode=am_mode, am_on_negatives=negatives,
                     weights=dict(ONLY, am=1.0))(
                xv, lbl, labels, ext).backward()
            assert (np.abs(xv.grad[1]).max() > 0) == negatives
    assert values[True]['am'] == pytest.approx(
        np.mean(list(per_image.values())), rel=1e-5)
    assert values[False]['am'] == pytest.approx(
        np.mean([per_image[0], per_image[2]]), rel=1e-5)
    assert values[True]['ext'] == pytest.approx(values[False]['ext'],
                                                rel=1e-6)
    assert values[False]['ext'] > 0


PROBES = [('conv1_1', 'W', (1, 0, 1, 1)), ('conv2_2', 'b', (3,)),
          ('conv3_1', 'b', (3,)), ('conv4_3', 'b', (7,)),
          ('conv5_2', 'b', (0,)), ('conv5_3', 'b', (11,))]


@pytest.mark.parametrize('term', ['am', 'ext'])
@pytest.mark.parametrize('am_mode', ['per-class', 'joint'])
def test_gain_terms_match_central_differences(term, am_mode):
    """L_am and L_ext reach the trunk with the gradient of their value, at
    coordinates of every stage of the trunk, on 48x48 images whose 3x3
    Grad-CAMs have their extremes in border cells (tied blocks)."""
    model = float64_model()
    rng = np.random.RandomState(1)
    x = rng.normal(0, 60, (2, 3, 48, 48))
    labels = np.array([[1, 0, 1], [0, 1, 0]], np.int32)
    lbl = np.zeros((2, 48, 48), np.int32)
    lbl[0, 4:20, 6:22], lbl[0, 28:44, 24:40], lbl[1, 10:30, 20:40] = 1, 3, 2
    ext = np.ones(2, bool)
    weights = dict(cl=0.0, am=0.0, seg=0.0, ext=0.0)
    weights[term] = 1.0
    loss = GAINLoss(model, am_mode=am_mode, weights=weights)

    with chainer.using_config('train', False):
        cams = cam_from_features(model, model.features(x), labels,
                                 (48, 48)).array
        for cam in cams:
            assert cam.max() > cam.min()
            assert (cam == cam.max()).sum() > 1 or \
                (cam == cam.min()).sum() > 1

        model.cleargrads()
        value = loss(x, lbl, labels, ext)
        assert float(value.array) > 0
        value.backward()
        h = 1e-7       # float64; larger steps cross ReLU and pooling kinks
        for link, kind, idx in PROBES:
            param = getattr(getattr(model, link), kind)
            analytic = param.grad[idx]
            original = param.array[idx]
            f = []
            for s in (h, -h):
                param.array[idx] = original + s
                f.append(float(loss(x, lbl, labels, ext).array))
            param.array[idx] = original
            numeric = (f[0] - f[1]) / (2 * h)
            assert analytic != 0, (link, kind, idx)
            assert abs(analytic - numeric) <= 1e-4 * abs(numeric), \
                (link, kind, idx, analytic, numeric)
    assert set(link for link, _, _ in PROBES) <= set(TRUNK)


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


@pytest.mark.gpu
@pytest.mark.parametrize('am_mode,cam_grad', [
    ('joint', 'activations'), ('joint', 'full'), ('joint', 'mask-only'),
    ('per-class', 'activations')])
def test_gain_step_matches_cpu(thin_model, am_mode, cam_grad):
    device = gpu_device()
    gpu_model = on_gpu(thin_model, device)
    arrays = data()
    loss_cpu, g_cpu = gain_grads(thin_model, arrays, am_mode=am_mode,
                                 cam_grad=cam_grad)
    loss_gpu, g_gpu = gain_grads(gpu_model, [device.send(a) for a in arrays],
                                 am_mode=am_mode, cam_grad=cam_grad)
    assert loss_gpu.dtype == np.float32
    np.testing.assert_allclose(float(loss_gpu.array), float(loss_cpu.array),
                               rtol=1e-4)
    assert set(g_gpu) == set(g_cpu)
    for name in PARAMS:
        assert g_cpu[name] is not None and np.abs(g_cpu[name]).max() > 0, \
            name
        assert isinstance(g_gpu[name], device.xp.ndarray), name
        assert_close(g_gpu[name], g_cpu[name], rtol=2e-3, scale_tol=1e-3,
                     name=name)


@pytest.mark.gpu
def test_gain_update_matches_cpu(thin_model):
    """One Adam update of the GAIN objective moves the GPU copy like the
    CPU model (the first Adam step is about lr * sign(grad), so a sign
    flip of a near-zero gradient may differ by at most 2 lr)."""
    device = gpu_device()
    gpu_model = on_gpu(thin_model, device)
    arrays = data()
    for model, batch in ((thin_model, arrays),
                         (gpu_model, [device.send(a) for a in arrays])):
        loss = GAINLoss(model, am_mode='joint')
        opt = make_optimizer(loss, LR, model.head_links())
        with chainer.using_config('train', False):
            opt.update(loss, *batch)
    cpu, gpu = dict(thin_model.namedparams()), dict(gpu_model.namedparams())
    for name in PARAMS:
        a, b = to_cpu(gpu[name].array), cpu[name].array
        assert np.isfinite(a).all(), name
        np.testing.assert_allclose(a, b, rtol=0, atol=2.01 * LR,
                                   err_msg=name)


def _check_no_float64(model, arrays, am_mode, cam_grad, am_score='sigmoid'):
    loss = GAINLoss(model, am_mode=am_mode, cam_grad=cam_grad,
                    am_score=am_score, weights=dict(ext=1.0))
    opt = make_optimizer(loss, LR, model.head_links())
    result = check_step(lambda: opt.update(loss, *arrays), loss, opt)
    assert result['float64'] == [], result['float64']
    assert set(result['function_dtypes']) <= {'float32', 'int32', 'bool'}, \
        result['function_dtypes']
    for key in ('param_dtypes', 'grad_dtypes', 'optimizer_state_dtypes'):
        assert result[key] == ['float32'], (key, result[key])
    # The recorder did see the whole step (classification stream, CAM,
    # attention mining, segmentation and their backward).
    assert result['function_calls'] > 300


@pytest.mark.parametrize('am_mode', AM_MODES)
@pytest.mark.parametrize('cam_grad', CAM_GRADS)
def test_no_float64_in_gain_step_cpu(thin_model, am_mode, cam_grad):
    _check_no_float64(thin_model, data(), am_mode, cam_grad)


def test_no_float64_in_gain_step_cpu_softmax_scores(thin_model):
    _check_no_float64(thin_model, data(), 'per-class', 'activations',
                      am_score='softmax')


@pytest.mark.gpu
@pytest.mark.parametrize('am_mode,cam_grad', [
    ('joint', 'activations'), ('joint', 'full'), ('per-class', 'mask-only')])
def test_no_float64_in_gain_step_gpu(thin_model, am_mode, cam_grad):
    device = gpu_device()
    gpu_model = on_gpu(thin_model, device)
    _check_no_float64(gpu_model, [device.send(a) for a in data()], am_mode,
                      cam_grad)
