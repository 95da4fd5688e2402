"""models/grad_cam.py: Grad-CAM against independent computations."""
import chainer
import numpy as np
import PIL.Image
import pytest

from helpers import SIZE, assert_close, data, gpu_device, on_gpu
from models import (cam_from_features, class_cams, grad_cam,
                    inference_cams, normalize_cam, resize_bilinear)
from models.fcn8s import CLASSIFICATION_HEAD


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


def upsample_reference(a, size, stride):
    """Half-pixel bilinear up-sampling of ``a`` ``(h, w)`` by ``stride``,
    clamped at the borders, with ``np.interp`` along each axis."""
    def along(values, n_out):
        src = (np.arange(n_out) + 0.5) / stride - 0.5
        return np.interp(src, np.arange(len(values)), values)

    rows = np.stack([along(r, size[1]) for r in a])           # (h, W)
    return np.stack([along(c, size[0]) for c in rows.T], 1)   # (H, W)


def normalized_reference(u, eps=1e-5):
    return (u - u.min()) / (u.max() - u.min() + eps)


def test_normalize_upsampled_map_matches_central_differences():
    """The peak in a corner cell ties an 8x8 block, the minimum on an edge
    cell ties a column of pixels; d sum(r * normalize(up(a))) / da by central
    differences of the numpy reference."""
    rng = np.random.RandomState(0)
    a = rng.uniform(1.0, 2.0, (3, 4))
    a[0, 0], a[2, 1] = 3.0, 0.2        # peak: corner cell; minimum: edge
    size, stride = (45, 60), 16        # not multiples of 16, like VOC's
    r = rng.normal(size=size)
    u = upsample_reference(a, size, stride)
    assert (u == u.max()).sum() == 64 and (u == u.min()).sum() >= 4

    x = chainer.Variable(a[None])
    value = chainer.functions.sum(
        normalize_cam(resize_bilinear(x, size, stride=stride)) * r[None])
    value.backward()
    np.testing.assert_allclose(float(value.array),
                               (r * normalized_reference(u)).sum(),
                               rtol=1e-10)

    h = 1e-6
    expected = np.zeros_like(a)
    for idx in np.ndindex(*a.shape):
        step = np.zeros_like(a)
        step[idx] = h
        f = [(r * normalized_reference(
            upsample_reference(a + s, size, stride))).sum()
            for s in (step, -step)]
        expected[idx] = (f[0] - f[1]) / (2 * h)
    np.testing.assert_allclose(x.grad[0], expected, rtol=1e-5,
                               atol=1e-7 * np.abs(expected).max())


@pytest.mark.gpu
@pytest.mark.parametrize('targets', ['multi-hot', 'index'])
def test_grad_cam_matches_cpu(thin_model, targets):
    device = gpu_device()
    gpu_model = on_gpu(thin_model, device)
    x, _, labels, _ = data()
    t = labels if targets == 'multi-hot' else labels.argmax(axis=1)
    with chainer.using_config('train', False):
        cam_cpu = grad_cam(thin_model, x, t)
        cam_gpu = grad_cam(gpu_model, device.send(x), device.send(t))
    assert cam_gpu.shape == (3, SIZE, SIZE) and cam_gpu.dtype == np.float32
    assert float(cam_cpu.array.max()) > 0
    assert_close(cam_gpu, cam_cpu, scale_tol=1e-3, name='grad_cam')


def resize_reference(a, size):
    """Half-pixel bilinear resize of ``a`` ``(h, w)`` to ``size``, clamped
    at the borders, with ``np.interp`` along each axis."""
    def along(values, n_out):
        src = (np.arange(n_out) + 0.5) * len(values) / n_out - 0.5
        return np.interp(src, np.arange(len(values)), values)

    rows = np.stack([along(r, size[1]) for r in a])           # (h, W)
    return np.stack([along(c, size[0]) for c in rows.T], 1)   # (H, W)


def images_and_targets():
    x = np.random.RandomState(2).uniform(-50, 50, (2, 3, 32, 40)).astype(
        np.float32)
    return x, np.array([0, 2], np.int32)


def test_one_scale_without_flip_is_the_single_map(thin_model):
    x, t = images_and_targets()
    with chainer.using_config('train', False):
        ref = normalize_cam(grad_cam(thin_model, x, t)).array
    np.testing.assert_array_equal(inference_cams(thin_model, x, t), ref)
    np.testing.assert_array_equal(
        inference_cams(thin_model, x, t, scales=(1.0,), flip=False), ref)


def test_flipped_cams_of_a_mirrored_image_are_mirrored(thin_model):
    x, t = images_and_targets()
    mirrored = np.ascontiguousarray(x[..., ::-1])
    cams = inference_cams(thin_model, x, t, flip=True)
    np.testing.assert_allclose(
        inference_cams(thin_model, mirrored, t, flip=True),
        cams[..., ::-1], atol=1e-6)
    assert np.abs(cams - inference_cams(thin_model, x, t)).max() > 0.01


def test_multi_scale_cams_are_the_normalised_mean_of_each_scale(
        thin_model):
    x, t = images_and_targets()
    scales = (1.0, 0.5, 1.5)
    maps = []
    for s in scales:
        size = (int(round(32 * s)), int(round(40 * s)))
        scaled = np.stack([[resize_reference(ch, size) for ch in img]
                           for img in x]).astype(np.float32)
        with chainer.using_config('train', False):
            cam = grad_cam(thin_model, scaled, t).array
        maps.append([resize_reference(m, (32, 40)) for m in cam])
    expected = [normalized_reference(m) for m in np.mean(maps, axis=0)]
    out = inference_cams(thin_model, x, t, scales=scales)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    assert np.abs(out - inference_cams(thin_model, x, t)).max() > 0.01
    classes = [[1], [3]]
    np.testing.assert_allclose(
        np.concatenate(class_cams(thin_model, x, classes, scales)), out,
        atol=1e-6)
