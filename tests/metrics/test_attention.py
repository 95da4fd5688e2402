"""metrics/attention.py: attention metrics against hand computations."""
import numpy as np
import pytest

from metrics import AttentionMetrics, energy_inside, pointing_hit, pseudo_label
from metrics.attention import (POINTING_OVER_CHANCE, TAUS, ZERO_CAMS_WARNING,
                               attention_warnings)


def add(metric, lbl, cams, classes):
    metric.add(np.asarray(lbl, np.int32), dict(
        cams=np.asarray(cams, np.float32), cam_classes=np.asarray(classes)))


def two_blob_label():
    """8x8: class 1 top-left, class 2 bottom-right, an ignore band."""
    lbl = np.zeros((8, 8), np.int32)
    lbl[1:4, 1:4] = 1
    lbl[5:8, 4:8] = 2
    lbl[4, :] = -1
    return lbl


@pytest.mark.parametrize('tau', [0.05, 0.3, 0.5, 0.77, 0.95])
def test_cam_equal_to_mask_gives_miou_one(tau):
    lbl = two_blob_label()
    m = AttentionMetrics(n_class=4, tau=tau)
    add(m, lbl, [lbl == 1, lbl == 2], [1, 2])
    r = m.result()
    assert r['attention_miou_fixed'] == 1.0
    assert r['attention_miou'] == 1.0
    assert r['attention_curve']['miou'] == [1.0] * len(TAUS)
    assert r['attention_iu'][:3] == [1.0, 1.0, 1.0]


def test_attention_miou_hand_computed():
    # 1x4 image, truth [bg, c1, c1, bg], CAM of class 1:
    lbl = [[0, 1, 1, 0]]
    cam = [[[0.2, 0.9, 0.4, 0.6]]]
    m = AttentionMetrics(n_class=2, tau=0.5)
    add(m, lbl, cam, [1])
    r = m.result()
    # tau 0.5: pred [0,1,0,1]: IU bg 1/3, c1 1/3.
    assert r['attention_miou_fixed'] == pytest.approx(1 / 3)
    curve = dict(zip(r['attention_curve']['tau'],
                     r['attention_curve']['miou']))
    # tau <= 0.2: all class 1 (0.2 reaches 0.2): bg 0, c1 2/4.
    assert curve[0.05] == curve[0.2] == pytest.approx(0.25)
    # 0.2 < tau <= 0.4: pred [0,1,1,1]: bg 1/2, c1 2/3.
    assert curve[0.25] == curve[0.4] == pytest.approx(7 / 12)
    # 0.6 < tau <= 0.9: pred [0,1,0,0]: bg 2/3, c1 1/2.
    assert curve[0.65] == curve[0.9] == pytest.approx(7 / 12)
    # tau 0.95: all background: bg 2/4, c1 0.
    assert curve[0.95] == pytest.approx(0.25)
    # The first of the tied maxima.
    assert r['attention_tau'] == 0.25
    assert r['attention_miou'] == pytest.approx(7 / 12)


def test_attention_sweep_matches_direct_thresholding():
    rng = np.random.RandomState(0)
    n_class, images = 5, []
    m = AttentionMetrics(n_class, tau=0.45)
    for _ in range(4):
        lbl = rng.randint(-1, n_class, (6, 7))
        classes = np.sort(rng.choice(np.arange(1, n_class), 2, replace=False))
        cams = rng.rand(2, 6, 7).astype(np.float32)
        add(m, lbl, cams, classes)
        images.append((lbl, cams, classes))
    r = m.result()

    def miou(tau):
        inter, union = np.zeros(n_class), np.zeros(n_class)
        for lbl, cams, classes in images:
            pred = np.where(cams.max(0) >= np.float32(tau),
                            classes[cams.argmax(0)], 0)
            valid = lbl >= 0
            for c in range(n_class):
                t, p = (lbl == c) & valid, (pred == c) & valid
                inter[c] += (t & p).sum()
                union[c] += (t | p).sum()
        return np.mean(inter[union > 0] / union[union > 0])

    assert r['attention_curve']['miou'] == pytest.approx(
        [miou(t) for t in TAUS])
    assert r['attention_miou_fixed'] == pytest.approx(miou(0.45))
    assert r['attention_miou'] == pytest.approx(max(miou(t) for t in TAUS))


def test_image_without_classes_is_all_background():
    m = AttentionMetrics(n_class=3, tau=0.5)
    add(m, [[0, 0, 1]], np.zeros((0, 1, 3)), [])
    r = m.result()
    # pred all 0: IU bg 2/3, c1 0.
    assert r['attention_miou_fixed'] == pytest.approx(1 / 3)
    assert r['energy'] is None and r['pointing'] is None


def test_cam_on_background_gives_zero_energy_and_pointing():
    lbl = two_blob_label()
    m = AttentionMetrics(n_class=4)
    add(m, lbl, [lbl == 0, lbl == 0], [1, 2])
    r = m.result()
    assert r['energy'] == 0.0 and r['pointing'] == 0.0
    assert r['energy_class'][:2] == [0.0, 0.0]
    assert r['pointing_class'][:2] == [0.0, 0.0]
    assert r['pointing_counted'] == 2


def test_energy_and_pointing_hand_computed():
    lbl = np.array([[1, 1, 0, 0],
                    [-1, 0, 0, 0],
                    [0, 0, 2, 2],
                    [-1, -1, -1, -1]], np.int32)
    a = np.zeros((4, 4), np.float32)       # class 1, peak on class 1
    a[0, 0], a[0, 1], a[0, 2], a[1, 0] = 1.0, 0.5, 0.5, 0.9
    # energy: (1 + .5) / (1 + .5 + .5) on non-ignore pixels = 0.75
    assert energy_inside(a, lbl, 1) == pytest.approx(0.75)
    assert pointing_hit(a, lbl, 1) is True
    b = np.zeros((4, 4), np.float32)       # class 1, peak on background
    b[2, 1], b[0, 0] = 0.8, 0.2
    assert energy_inside(b, lbl, 1) == pytest.approx(0.2)
    assert pointing_hit(b, lbl, 1) is False
    c = np.zeros((4, 4), np.float32)       # class 2, peak on ignore near it
    c[3, 3], c[2, 2] = 1.0, 0.25
    assert energy_inside(c, lbl, 2) == pytest.approx(1.0)
    assert pointing_hit(c, lbl, 2) is True
    assert pointing_hit(c, lbl, 2, tolerance=0) is None  # not counted
    assert pointing_hit(np.zeros((4, 4)), lbl, 2) is False  # flat: miss
    assert energy_inside(np.zeros((4, 4)), lbl, 2) == 0.0

    m = AttentionMetrics(n_class=3, tolerance=0)
    add(m, lbl, [a, b], [1, 1])
    add(m, lbl, [c], [2])
    r = m.result()
    assert r['energy_class'] == pytest.approx([(0.75 + 0.2) / 2, 1.0])
    assert r['energy'] == pytest.approx(((0.75 + 0.2) / 2 + 1.0) / 2)
    assert r['pointing_class'][0] == 0.5 and r['pointing_class'][1] is None
    assert r['pointing'] == 0.5 and r['pointing_counted'] == 2


def test_pseudo_label_thresholds():
    cams = np.array([[[0.1, 0.35, 0.7, 0.2, 0.3, 0.6]],
                     [[0.2, 0.1, 0.65, 0.9, 0.1, 0.0]]], np.float32)
    out = pseudo_label(cams, [3, 5], low=0.3, high=0.6)
    assert out.dtype == np.uint8
    # the bounds: == low is ignore, == high takes the class
    assert out.tolist() == [[0, 255, 3, 5, 255, 3]]
    assert pseudo_label(cams[:0], [], 0.3, 0.6).tolist() == [[0] * 6]


def test_zhang_tolerance_scales_with_the_image():
    from metrics.attention import zhang_tolerance
    assert zhang_tolerance((375, 500)) == pytest.approx(15.0)
    assert zhang_tolerance((96, 96)) == pytest.approx(2.88)


def test_pointing_distance_hand_computed():
    from metrics.attention import class_distance, peak_distance
    lbl = np.zeros((20, 20), np.int32)
    lbl[10:14, 10:14] = 2
    lbl[9, 9:15] = -1                     # an ignore band above it
    distance = class_distance(lbl, 2)
    cam = np.zeros((20, 20), np.float32)
    cam[7, 12] = 1.0                      # 3 px above the class
    assert peak_distance(cam, distance) == 3.0
    cam[:] = 0
    cam[8, 8] = 1.0                       # diagonal: sqrt(8) = 2.83 px
    assert peak_distance(cam, distance) == pytest.approx(np.sqrt(8))
    cam[:] = 0
    cam[11, 11] = 1.0                     # on the class
    assert peak_distance(cam, distance) == 0
    assert peak_distance(cam, class_distance(lbl, 3)) == np.inf  # absent
    assert peak_distance(np.zeros((20, 20)), distance) == np.inf  # flat


def test_pointing_at_every_tolerance_equals_a_loop_over_the_pixels():
    """The literal 15 px, the scaled tolerance (15 px per 500: 0.96 px on
    32 px) and the curve, from the kept distances, against the distance
    from the peak to every class pixel written out; per class, then over
    the classes."""
    from metrics.attention import CURVE_PX
    rng = np.random.RandomState(4)
    m, pairs = AttentionMetrics(n_class=3), []
    for _ in range(20):
        lbl = np.zeros((32, 32), np.int32)
        for c in (1, 2):
            y, x = rng.randint(0, 24, 2)
            lbl[y:y + 8, x:x + 8] = c
        cams = rng.rand(2, 32, 32) ** 4
        add(m, lbl, cams, [1, 2])
        for cam, c in zip(cams, (1, 2)):
            y, x = np.unravel_index(cam.argmax(), cam.shape)
            ys, xs = np.nonzero(lbl == c)
            pairs.append((c, np.sqrt((ys - y) ** 2 + (xs - x) ** 2).min()))
    r = m.result()

    def game(px):
        return np.mean([np.mean([d <= px for k, d in pairs if k == c])
                        for c in (1, 2)])
    assert r['pointing_scaled_px'] == pytest.approx(0.96)
    assert r['pointing_15px'] == pytest.approx(game(15))
    assert r['pointing_scaled'] == pytest.approx(game(0.96))
    assert r['pointing_curve']['px'] == sorted(list(CURVE_PX) + [0.96])
    assert r['pointing_curve']['pointing'] == pytest.approx(
        [game(px) for px in r['pointing_curve']['px']])
    assert 0 < game(0) < game(2) < game(8) < 1   # not flat here


def test_chance_at_a_tolerance_is_the_share_of_pixels_within_it():
    """A peak drawn at random over the image hits when it lands within the
    tolerance of the class: 1 pixel of 40 x 40 at the centre."""
    lbl = np.zeros((40, 40), np.int32)
    lbl[20, 20] = 1
    m = AttentionMetrics(n_class=2)
    add(m, lbl, np.ones((1, 40, 40)), [1])
    r = m.result()
    y, x = np.mgrid[:40, :40]
    within = np.sqrt((y - 20) ** 2 + (x - 20) ** 2)
    assert r['pointing_15px_chance'] == pytest.approx((within <= 15).mean())
    assert r['pointing_scaled_chance'] == pytest.approx(
        (within <= 1.2).mean())              # 15 / 500 * 40 px: 5 pixels
    assert r['pointing_scaled_chance'] == pytest.approx(5 / 1600.)


def test_energy_in_box_hand_computed():
    from metrics.attention import class_box, energy_in_box
    lbl = np.zeros((6, 6), np.int32)
    lbl[1, 1], lbl[3, 2] = 1, 1          # box rows 1..3, cols 1..2
    lbl[0, 0] = -1                        # ignore pixels count too
    assert class_box(lbl, 1) == (1, 1, 3, 2)
    cam = np.zeros((6, 6), np.float32)
    cam[2, 2], cam[0, 0], cam[5, 5] = 3.0, 1.0, 1.0   # 3 of 5 in the box
    assert energy_in_box(cam, lbl, 1) == pytest.approx(0.6)
    assert energy_in_box(cam, lbl, 2) == 0.0
    assert energy_in_box(np.zeros((6, 6)), lbl, 1) == 0.0


def test_every_pair_counts_in_the_standard_pointing_game():
    """A peak on an ignore pixel far from its class is not counted by the
    exact variant but is a miss of the standard game."""
    lbl = np.zeros((30, 30), np.int32)
    lbl[2:6, 2:6] = 1
    lbl[20:25, :] = -1
    cam = np.zeros((30, 30), np.float32)
    cam[22, 22] = 1.0
    m = AttentionMetrics(n_class=2)
    add(m, lbl, [cam], [1])
    r = m.result()
    assert r['pointing'] is None and r['pointing_counted'] == 0
    assert r['pointing_15px'] == 0.0 and r['cam_pairs'] == 1


def test_pointing_chance_is_the_share_of_the_class():
    """A peak on a random labelled pixel hits class c with the share of
    c among them; averaged per class, then over the classes."""
    chance = AttentionMetrics(4)
    a = np.zeros((4, 5), np.int32)
    a[0, :3] = 1                        # 3 of 20 pixels
    a[1:3, :] = 2                       # 10 of 20
    a[3, 4] = -1                        # ignored: 19 labelled
    b = np.zeros((2, 5), np.int32)
    b[0, :] = 1                         # 5 of 10
    for lbl, classes in ((a, [1, 2]), (b, [1])):
        chance.add(lbl, dict(cams=np.zeros((len(classes),) + lbl.shape),
                             cam_classes=np.array(classes)))
    expected = np.mean([np.mean([3 / 19., 5 / 10.]), 10 / 19.])
    assert chance.result()['pointing_chance'] == pytest.approx(expected)


def test_useless_attention_is_flagged_where_the_demo_never_goes():
    """The demo's models have at most 0.7 % all-zero CAMs and point 38 to
    59 % at a chance of 2.9 %; a trunk trained for segmentation only
    gave 13.9 % zero CAMs, the weak stand-in pointed 3.3 %."""
    demo = dict(zero_cams=0.0074, pointing=0.38, pointing_chance=0.029)
    assert attention_warnings(demo) == []
    assert len(attention_warnings(dict(demo, zero_cams=0.139))) == 1
    assert len(attention_warnings(dict(demo, pointing=0.033))) == 1
    assert ZERO_CAMS_WARNING > 0.0074 and POINTING_OVER_CHANCE * 0.029 < 0.38


def test_a_class_whose_peak_misses_its_object_is_warned_by_name():
    """Class 1's peak always on its object, class 2's always on class 1:
    the warning names class 2 (its game 0 % at the scaled tolerance, its
    chance there 25/(24 * 24)), not class 1, nor the model as a whole."""
    m = AttentionMetrics(n_class=3)
    for shift in range(5):
        lbl = np.zeros((24, 24), np.int32)
        lbl[2:7, 2 + shift:7 + shift] = 1
        lbl[15:20, 10:15] = 2
        on_1 = (lbl == 1).astype(np.float32)
        on_1[4, 4 + shift] = 2.0                  # its peak, inside class 1
        add(m, lbl, [on_1 / 2, on_1 / 2], [1, 2])
    r = m.result()
    assert r['pointing_scaled_class'] == [1.0, 0.0]
    assert r['pointing_scaled_chance_class'][1] == pytest.approx(25 / 576.)
    problems = attention_warnings(r, ['background', 'disc', 'cross'])
    assert problems == [
        'class cross: pointing game (0.72 px) 0.0 %, less than 2 times its '
        'chance (4.3 %)']
    assert 'class 2:' in attention_warnings(r)[0]
