"""Attention quality: how well the Grad-CAM of each ground-truth class
covers that class's pixels. Maps are min-max normalised Grad-CAMs, one per
(image, ground-truth class) pair; classes are label values
``1..n_class-1``. Energy and pointing are averaged per class, then over
the classes that occur (like mAP and mean IU).

* **Attention mIoU** (the weakly supervised "seed" metric): a pixel takes
  the class of the highest map if it is ``>= tau``, else background; mean
  IU against the ground truth, for every ``tau`` of :data:`TAUS` and a
  fixed one. A split's best ``tau`` flatters each model: choose it on
  held-out data (``evaluate.py --tau-from``) and report the curve.
* **Pointing game** (Zhang et al., "Top-down Neural Attention by
  Excitation Backprop", ECCV 2016): a hit when the map's peak lies within
  a tolerance of a pixel of its class (a flat map misses). The distance
  is kept per pair, so the game is known at any tolerance: 15 px
  (``pointing_15px``), 15 px per 500 px of the longer side
  (``pointing_scaled``, ours) and :data:`CURVE_PX`. Its chance level: the
  share of the image within the tolerance of the class.
* **Energy-based pointing game** (Wang et al., "Score-CAM", CVPR-W 2020):
  ``sum(cam[box]) / sum(cam)``, the box tight around the class's pixels
  (around all its objects on VOC).
* Ours: **energy in the mask**, ``sum(cam[label == c]) / sum(cam[label !=
  ignore])``; the **exact pointing game**, a hit only when the peak is on
  the class, a peak on an ignore pixel a hit when the class lies within
  :data:`POINTING_TOLERANCE` px, else not counted (VOC's void), with its
  chance (the class's share of the labelled pixels).
* **Zero CAMs**: the share of flat maps (no class evidence at conv5_3).

:class:`AttentionMetrics` keeps every image's counts, so that a split's
figures can be recomputed on any resample of its images
(``metrics.bootstrap``).
"""
import numpy as np
from scipy import ndimage

from datasets.voc import image_labels
from metrics.segmentation import (class_iu, nan_mean, optional, ratio,
                                  weighted_sum)

TAUS = np.round(np.arange(1, 20) * 0.05, 2)  # 0.05, 0.10, ..., 0.95
DEFAULT_TAU = 0.5
POINTING_TOLERANCE = 5
ZHANG_PX = 15.0
ZHANG_TOLERANCE = ZHANG_PX / 500.
#: Tolerances (px) of the pointing curve (and the split's scaled one).
CURVE_PX = (0, 1, 2, 4, 5, 8, 10, 15)
IGNORE = -1
#: Per-(image, class) values kept (``pointing``: NaN when not counted;
#: ``pointing_distance``: inf for a flat map).
PAIR_KEYS = ('pointing', 'pointing_distance', 'pointing_scaled_px',
             'pointing_chance', 'pointing_15px_chance',
             'pointing_scaled_chance', 'energy', 'energy_box', 'flat')
#: The per-class figures: the mean over a class's pairs.
CLASS_KEYS = ('pointing_15px', 'pointing_scaled', 'pointing',
              'pointing_15px_chance', 'pointing_scaled_chance',
              'pointing_chance', 'energy', 'energy_box')
#: Share of all-zero Grad-CAMs above which a model is flagged (the demo's
#: models: at most 0.7 %; a trunk trained for segmentation only: 14 %).
ZERO_CAMS_WARNING = 0.05
#: A pointing game below this multiple of its chance is flagged (shapes:
#: chance 2.9 %, the demo's models 38 to 59 %, a weak trunk 3.3 %).
POINTING_OVER_CHANCE = 2.0


def gt_classes(label_map, n_class):
    """Foreground label values ``(C,)`` present in ``label_map``."""
    return np.flatnonzero(image_labels(label_map, n_class)) + 1


def top_map(cams, classes):
    """``(best, arg)``: the highest value ``(H, W)`` of maps ``(C, H, W)``
    and its class (label values ``classes``); zeros without a map."""
    cams = np.asarray(cams)
    if len(cams) == 0:
        shape = cams.shape[1:]
        return np.zeros(shape, np.float32), np.zeros(shape, np.int32)
    return (cams.max(axis=0),
            np.asarray(classes, np.int32)[cams.argmax(axis=0)])


def pseudo_label(cams, classes, low, high):
    """``(H, W)`` uint8 VOC label: the class of the highest map where it is
    ``>= high``, background where ``< low``, 255 (ignore) in between."""
    best, arg = top_map(cams, classes)
    out = np.full(best.shape, 255, np.uint8)
    out[best < low] = 0
    out[best >= high] = arg[best >= high]
    return out


def energy_inside(cam, label_map, c):
    """Energy in the mask of class ``c`` (ignore pixels excluded); 0 for
    a flat map."""
    valid = label_map != IGNORE
    total = float(cam[valid].sum())
    return float(cam[label_map == c].sum()) / total if total > 0 else 0.0


def class_box(label_map, c):
    """``(y0, x0, y1, x1)`` inclusive, the tight box of class ``c``; None
    without one."""
    ys, xs = np.nonzero(label_map == c)
    if not len(ys):
        return None
    return ys.min(), xs.min(), ys.max(), xs.max()


def energy_in_box(cam, label_map, c):
    """Score-CAM's energy in the box of class ``c``; 0 for a flat map or
    an absent class."""
    box, total = class_box(label_map, c), float(cam.sum())
    if box is None or total <= 0:
        return 0.0
    y0, x0, y1, x1 = box
    return float(cam[y0:y1 + 1, x0:x1 + 1].sum()) / total


def zhang_tolerance(shape):
    """Zhang et al.'s 15 px per 500 px of the longer side of ``(H, W)``."""
    return ZHANG_TOLERANCE * max(shape)


def class_distance(label_map, c):
    """``(H, W)`` Euclidean distance to the nearest pixel of class ``c``
    (inf without one)."""
    mask = label_map == c
    if not mask.any():
        return np.full(label_map.shape, np.inf)
    return ndimage.distance_transform_edt(~mask)


def peak_distance(cam, distance):
    """``distance`` at the first maximum of ``cam``; inf for a flat map."""
    if cam.max() <= 0:
        return np.inf
    return float(distance.flat[int(cam.argmax())])


def pointing_hit(cam, label_map, c, tolerance=POINTING_TOLERANCE):
    """The exact pointing game of one map: True, False or None (not
    counted)."""
    if cam.max() <= 0:
        return False
    y, x = np.unravel_index(int(cam.argmax()), cam.shape)
    if label_map[y, x] != IGNORE:
        return bool(label_map[y, x] == c)
    r = tolerance
    near = label_map[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1]
    return True if (near == c).any() else None


class AttentionMetrics(object):
    """Accumulator of the attention figures, image by image:
    ``add(label_map, outputs)`` takes the label ``(H, W)`` and
    ``outputs['cams']`` ``(C, H, W)``, the maps of the label values
    ``outputs['cam_classes']`` ``(C,)`` (``models.class_cams``)."""

    needs_cams = True

    def __init__(self, n_class, taus=TAUS, tau=DEFAULT_TAU,
                 tolerance=POINTING_TOLERANCE):
        self.n_class, self.tolerance = n_class, tolerance
        self.taus = np.sort(np.asarray(taus, dtype=np.float32))
        self.tau = float(tau)
        # Per image: sweep[k, t, a], pixels of truth t whose top class a has
        # a map that reaches exactly the k lowest thresholds; fixed[r, t, a],
        # r: reaches self.tau. Per pair: its image, class and PAIR_KEYS.
        self.sweep, self.fixed = [], []
        self.pairs = {k: [] for k in ('pair_image', 'pair_class') + PAIR_KEYS}

    def add(self, label_map, outputs):
        cams, classes = outputs['cams'], outputs['cam_classes']
        best, arg = top_map(cams, classes)
        keep = (label_map >= 0) & (label_map < self.n_class)
        best, arg, truth = best[keep], arg[keep], label_map[keep]
        k = np.searchsorted(self.taus, best, side='right')
        reached = (best >= np.float32(self.tau)).astype(np.int64)
        n = self.n_class
        for hists, index, depth in ((self.sweep, k, len(self.taus) + 1),
                                    (self.fixed, reached, 2)):
            flat = (index * n + truth) * n + arg
            hists.append(np.bincount(flat, minlength=depth * n * n).reshape(
                depth, n, n).astype(np.int32))
        scaled = zhang_tolerance(label_map.shape)
        labelled = label_map[label_map >= 0]
        share = np.bincount(labelled.ravel(), minlength=self.n_class) / \
            max(labelled.size, 1)
        for cam, c in zip(cams, classes):
            hit = pointing_hit(cam, label_map, c, self.tolerance)
            distance = class_distance(label_map, c)
            for key, value in (
                    ('pair_image', len(self.sweep) - 1), ('pair_class', c),
                    ('pointing', np.nan if hit is None else float(hit)),
                    ('pointing_distance', peak_distance(cam, distance)),
                    ('pointing_scaled_px', scaled),
                    ('pointing_chance', float(share[c])),
                    ('pointing_15px_chance', (distance <= ZHANG_PX).mean()),
                    ('pointing_scaled_chance', (distance <= scaled).mean()),
                    ('energy', energy_inside(cam, label_map, c)),
                    ('energy_box', energy_in_box(cam, label_map, c)),
                    ('flat', float(cam.max() <= 0))):
                self.pairs[key].append(value)

    def per_image(self):
        """``attention_sweep`` ``(N, T + 1, n, n)``, ``attention_fixed``
        ``(N, 2, n, n)``, ``taus``, ``fixed_tau``, and ``(P,)`` per pair:
        ``pair_image``, ``pair_class`` and :data:`PAIR_KEYS`."""
        n = self.n_class
        records = dict(
            attention_sweep=np.array(self.sweep, np.int32).reshape(
                -1, len(self.taus) + 1, n, n),
            attention_fixed=np.array(self.fixed, np.int32).reshape(-1, 2, n,
                                                                   n),
            taus=self.taus, fixed_tau=np.float32(self.tau))
        for key, values in self.pairs.items():
            records[key] = np.array(values, np.int32 if key.startswith(
                'pair_') else np.float64)
        return records

    def result(self):
        return attention_scores(self.per_image())


def attention_hists(records, weights=None):
    """Confusion matrices ``(..., T + 1, n, n)``, one per sweep threshold,
    then the fixed ``tau``'s; images counted ``weights`` ``(..., N)``
    times (a bootstrap resample per row; default once)."""
    sweep = weighted_sum(weights, records['attention_sweep'])
    fixed = weighted_sum(weights, records['attention_fixed'])
    # below threshold j: the pixels that reach at most the j + 1 lowest
    below = np.cumsum(sweep, axis=-3)[..., :-1, :, :]
    reached = sweep.sum(axis=-3, keepdims=True) - below
    below = np.concatenate([below, fixed[..., :1, :, :]], axis=-3)
    hists = np.concatenate([reached, fixed[..., 1:, :, :]], axis=-3)
    hists[..., 0] += below.sum(axis=-1)   # below: predicted background
    return hists


def pair_values(records, key):
    """``(P,)``: the :data:`CLASS_KEYS` ``key`` of each pair (a pointing
    game: 1 hit, 0 miss, NaN not counted)."""
    distance = records['pointing_distance']
    if key == 'pointing_15px':
        return (distance <= ZHANG_PX).astype(np.float64)
    if key == 'pointing_scaled':
        return (distance <= records['pointing_scaled_px']).astype(np.float64)
    return records[key]


def class_means(records, values, weights=None):
    """``(..., n_class - 1)``: the mean per class of the per-pair
    ``values`` ``(P,)`` (NaN: not counted), each pair weighted as its
    image; NaN for a class without a counted pair."""
    n = records['attention_sweep'].shape[-1]
    w = _pair_weights(records, weights)
    counted = ~np.isnan(values)
    onehot = np.eye(n - 1)[records['pair_class'] - 1]
    return ratio((w * np.where(counted, values, 0)) @ onehot,
                 (w * counted) @ onehot)


def zero_cams(records, weights=None):
    """``(...)``: the share of flat maps among the (weighted) pairs."""
    w = _pair_weights(records, weights)
    return ratio(w @ records['flat'], w.sum(axis=-1))


def _pair_weights(records, weights):
    if weights is None:
        return np.ones(len(records['pair_image']))
    return np.asarray(weights, np.float64)[..., records['pair_image']]


def attention_scores(records):
    """The attention figures of a split's records; ``<key>_class``: per
    class (None: absent)."""
    ius = class_iu(attention_hists(records))
    taus, curve = records['taus'], nan_mean(ius[:-1])
    best = int(np.nanargmax(curve)) if not np.all(np.isnan(curve)) else 0
    result = dict(
        attention_miou=optional(curve[best]),
        attention_tau=round(float(taus[best]), 4),
        attention_miou_fixed=optional(nan_mean(ius[-1])),
        attention_fixed_tau=round(float(records['fixed_tau']), 4),
        attention_curve=dict(tau=[round(float(t), 4) for t in taus],
                             miou=_nones(curve)),
        attention_iu=_nones(ius[best]), attention_iu_fixed=_nones(ius[-1]))
    for key in CLASS_KEYS:
        per_class = class_means(records, pair_values(records, key))
        result[key] = optional(nan_mean(per_class))
        result[key + '_class'] = _nones(per_class)
    px = np.unique(records['pointing_scaled_px'])    # one, or mixed sizes
    px = round(float(px[0]), 4) if len(px) == 1 else None
    tolerances = sorted(set(CURVE_PX) | ({px} if px is not None else set()))
    result['pointing_scaled_px'] = px
    result['pointing_curve'] = dict(px=tolerances, pointing=[optional(
        nan_mean(class_means(records, (records['pointing_distance'] <= t)
                             .astype(np.float64))))
        for t in tolerances])
    result.update(pointing_counted=int((~np.isnan(records['pointing'])).sum()),
                  cam_pairs=len(records['pair_image']),
                  zero_cams=optional(zero_cams(records)))
    return result


def attention_warnings(result, class_names=None):
    """Phrases on what makes a model's Grad-CAMs useless for GAIN: too
    many flat maps, a pointing game (exact, or a class's at the scaled
    tolerance) below :data:`POINTING_OVER_CHANCE` times its chance."""
    problems = []
    zero, pointing = result.get('zero_cams'), result.get('pointing')
    chance = result.get('pointing_chance')
    if zero is not None and zero > ZERO_CAMS_WARNING:
        problems.append('%.1f %% of its Grad-CAMs are all zero (more than '
                        '%.0f %%: no class evidence at conv5_3)'
                        % (100 * zero, 100 * ZERO_CAMS_WARNING))
    if (pointing is not None and chance is not None and
            pointing < POINTING_OVER_CHANCE * chance):
        problems.append('its pointing game (%.1f %%) is at chance (%.1f %%, '
                        'a peak on a random labelled pixel; less than %g '
                        'times that)' % (100 * pointing, 100 * chance,
                                         POINTING_OVER_CHANCE))
    px = result.get('pointing_scaled_px')
    for c, (hit, chance) in enumerate(zip(
            result.get('pointing_scaled_class', []),
            result.get('pointing_scaled_chance_class', [])), 1):
        if hit is not None and chance is not None and \
                hit < POINTING_OVER_CHANCE * chance:
            problems.append(
                'class %s: pointing game (%s) %.1f %%, less than %g times '
                'its chance (%.1f %%)' % (
                    class_names[c] if class_names else c,
                    '%g px' % px if px else '15 px per 500',
                    100 * hit, POINTING_OVER_CHANCE, 100 * chance))
    return problems


def iu_at(records, tau, weights=None):
    """``(..., n)``: each class's attention IU at the sweep's ``tau``."""
    taus = np.asarray(records['taus'])
    j = int(np.argmin(np.abs(taus - np.float32(tau))))
    if abs(float(taus[j]) - tau) > 1e-6:
        raise ValueError('tau %g is not one of the sweep\'s %s'
                         % (tau, taus.tolist()))
    return class_iu(attention_hists(records, weights)[..., j, :, :])


def miou_at(records, tau, weights=None):
    """Attention mIoU ``(...)`` at the sweep threshold ``tau``."""
    return nan_mean(iu_at(records, tau, weights))


def _nones(a):
    return [optional(v) for v in a]
