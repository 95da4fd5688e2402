"""datasets/augment.py: --augment moves image and label map together."""
import chainer
import numpy as np
import pytest

from datasets import SegmentationTransform
from datasets.augment import (FILL, OPERATIONS, SUB_POLICIES,
                              AutoAugmentPolicy, ScaleCropJitter, augmentation)


#: The colour of each label of :func:`painted` (-1: none).
COLOURS = {0: (20, 20, 20), 1: (230, 30, 30), 3: (30, 30, 230)}


def painted(h=45, w=61):
    """An image whose colour says its label: background 0, a block of 1
    touching a block of 3 (a nearest-neighbour label map never shows a 2
    between them), an ignored first row (black)."""
    lbl = np.zeros((h, w), np.int32)
    lbl[10:30, 8:30], lbl[10:30, 30:50] = 1, 3
    lbl[0] = -1
    img = np.zeros((h, w, 3), np.uint8)
    for k, colour in COLOURS.items():
        img[lbl == k] = colour
    return img, lbl


def check_moved_together(img, lbl, out_img, out_lbl, tolerance):
    """Where the output's label is k inside a uniform 3x3 block of labels,
    its colour is k's; a pixel from outside the image has the mean colour
    and -1; no label is made up."""
    assert out_img.shape == img.shape and out_img.dtype == np.uint8
    assert out_lbl.shape == lbl.shape and out_lbl.dtype == np.int32
    assert set(np.unique(out_lbl)) <= {-1, 0, 1, 3}
    h, w = lbl.shape
    checked = 0
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            block = out_lbl[y - 1:y + 2, x - 1:x + 2]
            k = out_lbl[y, x]
            if k >= 0 and (block == k).all():
                assert np.abs(out_img[y, x].astype(int) -
                              COLOURS[k]).max() <= tolerance, (y, x, k)
                checked += 1
    assert checked > h * w / 3
    outside = (out_img == FILL).all(axis=2)
    assert (out_lbl[outside] == -1).all()
    return outside.any()


def coordinates(h=45, w=61):
    """An image whose red and green say a pixel's column and row (``4 x +
    2``, ``4 y + 2``) and a label map holding its index ``y w + x``."""
    y, x = np.mgrid[:h, :w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0], img[..., 1] = 4 * x + 2, 4 * y + 2
    return img, (y * w + x).astype(np.int32)


def test_scale_and_crop_move_image_and_mask_together():
    """Scaled by the scale s the augmenter drew: the labelled window is
    the scaled image's size (round(s w) x round(s h)) or the image's,
    whichever is smaller, the label map is the nearest-neighbour scaling
    by s, and each pixel's colour comes from where its label does."""
    img, lbl = coordinates()
    h, w = lbl.shape
    augment, scales = ScaleCropJitter(jitter=0), []
    draw = augment.draw_scale

    def recorded():
        scales.append(draw())
        return scales[-1]
    augment.draw_scale = recorded
    np.random.seed(0)
    for _ in range(30):
        out_img, out_lbl = augment(img, lbl)
        outside = out_lbl < 0
        assert (out_img[outside] == FILL).all()
        ys, xs = np.nonzero(~outside)
        (ly, lx), (iy, ix) = divmod(out_lbl[ys, xs], w), (
            (out_img[ys, xs, c] - 2) / 4. for c in (1, 0))
        for side, at, source in ((h, ys, ly), (w, xs, lx)):
            scaled = int(round(side * scales[-1]))
            assert at.max() - at.min() + 1 == min(scaled, side)
            # Nearest neighbour takes the source pixel under the scaled
            # pixel's centre, (at + offset + 0.5) side / scaled: within
            # 0.5 of a line of slope side / scaled, a spread below 1.
            drift = source - (at + 0.5) * side / scaled
            assert drift.max() - drift.min() < 1, (side, scales[-1])
        # Bilinear weights centre on the exact source, the nearest
        # neighbour is within 0.5 of it, and the 4-level ramp rounds to
        # 1/8 pixel: 0.625, away from the clamped borders.
        inner = (ly >= 2) & (ly < h - 2) & (lx >= 2) & (lx < w - 2)
        assert inner.sum() > h * w / 3
        assert np.abs(iy - ly)[inner].max() <= 0.625
        assert np.abs(ix - lx)[inner].max() <= 0.625
    assert min(scales) < 0.95 and max(scales) > 1.05


def test_colour_jitter_changes_colours_only():
    img, lbl = painted()
    np.random.seed(1)
    out_img, out_lbl = ScaleCropJitter(scale=(1, 1), jitter=0.3)(img, lbl)
    assert np.array_equal(out_lbl, lbl)
    assert not np.array_equal(out_img, img)


def test_geometric_operations_move_the_mask():
    img, lbl = painted()
    moves = AutoAugmentPolicy(sub_policies=(
        (('rotate', 1.0, 20), ('translate_x', 1.0, 0.15)),
        (('translate_y', 1.0, 0.15), ('rotate', 1.0, 10))))
    np.random.seed(2)
    filled = 0
    for _ in range(20):
        out_img, out_lbl = moves(img, lbl)
        assert not np.array_equal(out_lbl, lbl)
        filled += check_moved_together(img, lbl, out_img, out_lbl, 40)
    assert filled == 20


def test_photometric_operations_leave_the_mask():
    img, lbl = painted()
    names = [n for n in OPERATIONS if n not in
             ('rotate', 'translate_x', 'translate_y')]
    magnitudes = dict(posterize=4, solarize=128)
    policy = AutoAugmentPolicy(sub_policies=tuple(
        ((n, 1.0, magnitudes.get(n, 0.5)), (n, 0.0, None)) for n in names))
    np.random.seed(3)
    changed = set()
    for _ in range(60):
        out_img, out_lbl = policy(img, lbl)
        assert np.array_equal(out_lbl, lbl)
        if not np.array_equal(out_img, img):
            changed.add(tuple(out_img[15, 15]))
    assert len(changed) > 3


def test_the_policy_uses_every_operation():
    used = {name for policy in SUB_POLICIES for name, _, _ in policy}
    assert used == set(OPERATIONS)
    assert all(0 <= p <= 1 for policy in SUB_POLICIES for _, p, _ in policy)


@pytest.mark.parametrize('name', ['seg', 'autoaugment'])
def test_augmentation_only_in_train_mode(name):
    img, lbl = painted()
    transform = SegmentationTransform(augment=augmentation(name))
    np.random.seed(4)
    with chainer.using_config('train', False):
        x, label_map, _ = transform((img, lbl, np.ones(3, np.int32)))
    assert np.array_equal(label_map, lbl)
    with chainer.using_config('train', True):
        results = [transform((img, lbl, np.ones(3, np.int32)))
                   for _ in range(5)]
    assert any(not np.array_equal(r[0], x) for r in results)
    assert augmentation('none') is None
