"""The GAIN objective: gradient flow of each term, the --cam-grad modes,
the frozen head, and the soft mask."""
import copy

import chainer
import chainer.functions as F
import numpy as np
import pytest

from helpers import observe
from models import cam_from_features, normalize_cam
from models.fcn8s import CLASSIFICATION_HEAD, TRUNK
from models.gain import soft_erase, soft_mask
from training.gain_loss import GAINLoss, parse_warmup
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


ONLY = dict(cl=0.0, am=0.0, seg=0.0, ext=0.0)


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
    optimizer = make_optimizer(loss, 1e-3,
                               thin_model.links_named(CLASSIFICATION_HEAD))
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


def test_soft_mask_and_erasure_on_a_hand_made_map():
    cam = np.array([[[0.0, 0.5, 1.0]]], dtype=np.float32)     # (1, 1, 3)
    mask = soft_mask(cam, sigma=0.5, omega=10.0)
    sig = 1 / (1 + np.exp(-np.array([-5.0, 0.0, 5.0])))
    np.testing.assert_allclose(mask[0, 0], sig, rtol=1e-6)
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 1, 3) - 4
    erased = soft_erase(x, cam, sigma=0.5, omega=10.0).array
    np.testing.assert_allclose(erased, x * (1 - sig), rtol=1e-5)
    # a fully attended pixel becomes the mean colour (0 after preprocessing)
    full = soft_erase(x, np.ones((1, 1, 3), np.float32), sigma=0.5,
                      omega=1e4).array
    np.testing.assert_array_equal(full, 0)


def test_erased_cams_per_class_and_joint():
    from models.gain import erased_cams
    labels = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]], np.int32)
    rows, targets = erased_cams(labels, 'per-class', np.float32)
    assert rows.tolist() == [0, 0, 2]
    assert targets.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    assert targets.dtype == np.float32
    rows, targets = erased_cams(labels, 'joint', np.float32)
    assert rows.tolist() == [0, 2]
    assert targets.tolist() == [[1, 0, 1], [0, 1, 0]]


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
