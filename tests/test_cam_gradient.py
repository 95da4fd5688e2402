"""Gradients of the attention map against central differences in float64.

An up-sampled Grad-CAM ties whole blocks of pixels wherever its maximum or
minimum lies in a border cell (edge clamping copies the cell's value onto
them); the min-max normalisation must still give the gradient of a min and
a max, not that gradient times the number of tied pixels.
"""
import chainer
import numpy as np
import pytest

from helpers import float64_model
from models import cam_from_features, normalize_cam, resize_bilinear
from models.fcn8s import TRUNK
from training.gain_loss import GAINLoss


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
