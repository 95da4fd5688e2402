"""FCN8s against fcn's, Grad-CAM against an independent computation."""
import chainer
import fcn
import numpy as np
import PIL.Image
import pytest

from models import (FCN8s, cam_from_features, grad_cam, normalize_cam,
                    resize_bilinear)
from models.fcn8s import CLASSIFICATION_HEAD
from runtime.model_files import load_model


def test_segment_equals_fcn_forward(tmp_path):
    """An npz saved from fcn.models.FCN8s (random weights) gives the same
    segment scores in models.FCN8s as fcn's own forward."""
    rng = np.random.RandomState(0)
    ref = fcn.models.FCN8s(n_class=5)
    for _, p in ref.namedparams():
        fan_in = np.prod(p.shape[1:]) if p.ndim > 1 else 1
        p.array[...] = rng.normal(0, np.sqrt(2.0 / fan_in), p.shape)
    path = str(tmp_path / 'fcn8s.npz')
    chainer.serializers.save_npz(path, ref)

    model, has_head = load_model(path)
    assert (model.n_class, model.width, has_head) == (5, 1.0, False)
    x = rng.normal(0, 50, (1, 3, 37, 45)).astype(np.float32)
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        ref(x)
        ours = model.segment(x)
    assert ours.shape == (1, 5, 37, 45)
    assert np.abs(ref.score.array).max() > 0
    np.testing.assert_allclose(ours.array, ref.score.array, rtol=1e-4,
                               atol=1e-4 * np.abs(ref.score.array).max())


def test_thin_model_shapes():
    model = FCN8s(n_class=6, width=0.125)
    x = np.zeros((2, 3, 64, 80), dtype=np.float32)
    with chainer.using_config('train', False):
        assert model.segment(x).shape == (2, 6, 64, 80)
        assert model.classify(x).shape == (2, 5)
        assert model.features(x).shape == (2, 64, 4, 5)
    assert model.conv1_1.W.shape == (8, 3, 3, 3)
    assert model.fc6_cl.W.shape == (512, 64)


def test_resize_matches_pil_bilinear():
    rng = np.random.RandomState(0)
    maps = rng.rand(2, 4, 5).astype(np.float32)
    out = resize_bilinear(maps, (16, 23)).array
    for m, o in zip(maps, out):
        pil = np.asarray(PIL.Image.fromarray(m, mode='F').resize(
            (23, 16), PIL.Image.BILINEAR))
        np.testing.assert_allclose(o, pil, atol=1e-5)


def test_cells_land_on_their_pixels_on_any_image_size(thin_model):
    """On VOC's 375x500 the conv5_3 cells are 16-pixel cells (24 x 32 of
    them cover 384 x 512 pixels), not a grid stretched over the image:
    cell (i, j) peaks at pixel (16 i + 7.5, 16 j + 7.5), and the map equals
    PIL's x16 up-sampling cropped to the image."""
    x = np.zeros((1, 3, 375, 500), dtype=np.float32)
    with chainer.using_config('train', False):
        assert thin_model.features(x).shape == (1, 32, 24, 32)
        assert grad_cam(thin_model, x, np.array([0])).shape == (1, 375, 500)
    cell = np.zeros((1, 24, 32), np.float32)
    cell[0, 20, 29] = 1
    up = resize_bilinear(cell, (375, 500), stride=16).array[0]
    rows, cols = np.nonzero(up == up.max())
    assert set(rows) == {16 * 20 + 7, 16 * 20 + 8}
    assert set(cols) == {16 * 29 + 7, 16 * 29 + 8}
    rng = np.random.RandomState(0)
    maps = rng.rand(24, 32).astype(np.float32)
    pil = np.asarray(PIL.Image.fromarray(maps, mode='F').resize(
        (512, 384), PIL.Image.BILINEAR))[:375, :500]
    np.testing.assert_allclose(
        resize_bilinear(maps[None], (375, 500), stride=16).array[0], pil,
        atol=1e-5)


def numpy_head(model, a):
    """Head logits in float64 numpy (eval mode), ``a`` ``(B, C, h, w)``."""
    b, c, h, w = a.shape
    p = a[:, :, :h // 2 * 2, :w // 2 * 2].reshape(b, c, h // 2, 2, w // 2, 2)
    g = p.max(axis=(3, 5)).mean(axis=(2, 3))
    for name in CLASSIFICATION_HEAD:
        link = getattr(model, name)
        g = g @ link.W.array.astype(np.float64).T + link.b.array
        if name != 'score_cl':
            g = np.maximum(g, 0)
    return g


def test_grad_cam_matches_finite_differences(thin_model):
    """Grad-CAM = ReLU(sum_k mean(dS/dA_k) A_k), up-sampled by 16 (PIL)
    and cropped to an image of 60 x 50; dS/dA by central differences of a
    numpy re-implementation of the head. The activations are drawn without
    ties so that max pooling is differentiable at them."""
    model = thin_model
    rng = np.random.RandomState(2)
    a = rng.uniform(0.1, 2.0, (2, 32, 4, 4))
    labels = np.array([[1, 0, 1], [0, 1, 0]], dtype=np.int32)
    cams = cam_from_features(model, a.astype(np.float32), labels,
                             (60, 50)).array
    assert cams.shape == (2, 60, 50)
    eps = 1e-4
    for n in range(2):
        steps = np.eye(a[n].size).reshape((-1,) + a[n].shape) * eps
        score = numpy_head(model, a[n] + steps)[:, labels[n] == 1].sum(1) - \
            numpy_head(model, a[n] - steps)[:, labels[n] == 1].sum(1)
        weights = (score / (2 * eps)).reshape(a[n].shape).mean(axis=(1, 2))
        cam = np.maximum((weights[:, None, None] * a[n]).sum(axis=0), 0)
        assert cam.max() > 0
        expected = np.asarray(PIL.Image.fromarray(
            cam.astype(np.float32), mode='F').resize((64, 64),
                                                     PIL.Image.BILINEAR))
        expected = expected[:60, :50]
        np.testing.assert_allclose(cams[n], expected, rtol=1e-3,
                                   atol=1e-4 * cam.max())


def test_grad_cam_targets(thin_model):
    """Class indices give the one-hot map; a multi-hot target sums the
    labelled scores; grad_cam takes its features from conv5_3."""
    x = np.random.RandomState(2).normal(0, 60, (2, 3, 64, 64)).astype(
        np.float32)
    with chainer.using_config('train', False):
        a = thin_model.features(x)
        by_index = grad_cam(thin_model, x, np.array([2, 1])).array
        one_hot = cam_from_features(thin_model, a, np.array(
            [[0, 0, 1], [0, 1, 0]]), (64, 64)).array
    np.testing.assert_allclose(by_index, one_hot, rtol=1e-6)
    assert by_index.max() > 0


def test_grad_cam_is_differentiable(thin_model):
    x = np.random.RandomState(0).normal(0, 60, (2, 3, 48, 48)).astype(
        np.float32)
    for double in (False, True):
        thin_model.cleargrads()
        cam = grad_cam(thin_model, x, np.array([0, 1]), double_backprop=double)
        chainer.functions.sum(cam).backward()
        assert np.abs(thin_model.conv1_1.W.grad).max() > 0
        head_grad = thin_model.fc6_cl.W.grad
        assert (head_grad is not None and np.abs(head_grad).max() > 0) \
            == double


def test_normalize_cam_hand_made():
    cam = np.array([[[0., 1.], [2., 4.]], [[3., 3.], [3., 3.]]], np.float32)
    out = normalize_cam(cam).array
    np.testing.assert_allclose(out[0], [[0, .25], [.5, 1]], atol=1e-5)
    np.testing.assert_array_equal(out[1], 0)  # flat map: 0, not nan


def test_grad_cam_rejects_bad_targets(thin_model):
    x = np.zeros((2, 3, 32, 32), dtype=np.float32)
    with pytest.raises(ValueError):
        grad_cam(thin_model, x, np.zeros((2, 5)))
