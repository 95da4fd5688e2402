"""models/fcn8s.py: FCN8s against fcn's, on any image size, on the GPU."""
import copy

import chainer
import fcn
import numpy as np
import PIL.Image
import pytest

from helpers import assert_close, data, gpu_device, on_gpu
from models import FCN8s, grad_cam, resize_bilinear
from models.fcn8s import TRUNK
from models.io import load_model


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


@pytest.mark.parametrize('size', [(375, 500), (33, 47), (64, 48), (15, 9)])
def test_cells_land_on_their_pixels_on_any_image_size(thin_model, size):
    """On VOC's 375x500, odd, even, non-square and one-cell images the
    conv5_3 cells are 16-pixel cells (ceil(H/16) x ceil(W/16) of them),
    not a grid stretched over the image: cell (i, j) is centred on pixel
    (16 i + 7.5, 16 j + 7.5), the up-sampled map peaks there, and it
    equals PIL's x16 up-sampling cropped to the image."""
    H, W = size
    h, w = -(-H // 16), -(-W // 16)
    rng = np.random.RandomState(0)
    x = rng.normal(0, 50, (1, 3, H, W)).astype(np.float32)
    with chainer.using_config('train', False):
        cells = thin_model.features(x).array
        assert cells.shape == (1, 32, h, w) and cells.any()
        assert grad_cam(thin_model, x, np.array([0])).shape == (1, H, W)
    if H % 16 == 0 and W % 16 == 0:
        # Centred cells tile a 16k-pixel side symmetrically: the image and
        # every kernel turned by 180 degrees turn the cells with them (to
        # float32 sums in another order).
        turned = copy.deepcopy(thin_model)
        for name in TRUNK:
            kernel = getattr(turned, name).W
            kernel.array = kernel.array[..., ::-1, ::-1].copy()
        with chainer.using_config('train', False):
            np.testing.assert_allclose(
                turned.features(x[..., ::-1, ::-1].copy()).array,
                cells[..., ::-1, ::-1], rtol=1e-4,
                atol=1e-4 * float(np.abs(cells).max()))
    for n, side in ((h, H), (w, W)):       # each cell along one axis
        up = resize_bilinear(np.eye(n, dtype=np.float32)[:, :, None],
                             (side, 1), stride=16).array[:, :, 0]
        for i in range(1, n - 1):           # the ends are clamped
            assert set(np.flatnonzero(up[i] == up[i].max())) == {
                16 * i + 7, 16 * i + 8}
    maps = rng.rand(h, w).astype(np.float32)
    pil = np.asarray(PIL.Image.fromarray(maps, mode='F').resize(
        (16 * w, 16 * h), PIL.Image.BILINEAR))[:H, :W]
    np.testing.assert_allclose(
        resize_bilinear(maps[None], (H, W), stride=16).array[0], pil,
        atol=1e-5)


@pytest.mark.parametrize('size', [(1, 1), (2, 3), (8, 8), (5, 33)])
def test_tiny_images_through_fcn8s(thin_model, size):
    x = np.random.RandomState(0).normal(0, 50, (2, 3) + size).astype(
        np.float32)
    seg = thin_model.segment(x)
    logits = thin_model.classify(x)
    cam = grad_cam(thin_model, x, np.array([0, 2]))
    assert seg.shape == (2, 4) + size and logits.shape == (2, 3)
    assert cam.shape == (2,) + size
    for v in (seg, logits, cam):
        assert np.isfinite(v.array).all()


@pytest.mark.gpu
def test_segment_and_classify_match_cpu(thin_model):
    device = gpu_device()
    gpu_model = on_gpu(thin_model, device)
    x = data()[0]
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        seg_cpu, cls_cpu = thin_model.segment(x), thin_model.classify(x)
        xg = device.send(x)
        seg_gpu, cls_gpu = gpu_model.segment(xg), gpu_model.classify(xg)
    assert isinstance(seg_gpu.array, device.xp.ndarray)
    assert seg_gpu.dtype == np.float32 and cls_gpu.dtype == np.float32
    assert_close(seg_gpu, seg_cpu, name='segment')
    assert_close(cls_gpu, cls_cpu, name='classify')
