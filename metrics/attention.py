"""Attention quality: how well the Grad-CAM of each ground-truth class
covers that class's pixels.

All maps here are min-max normalised Grad-CAMs (``models.class_cams``), one per
(image, ground-truth class) pair; classes are label values ``1..n_class-1``.

* **Attention mIoU** (the weakly supervised "seed" metric): a pixel takes
  the class of the highest map if that map reaches ``tau`` (``>= tau``),
  else background; mean IU of that segmentation against the ground truth
  over the split (ignore pixels skipped), for every ``tau`` of
  :data:`TAUS`. The best ``tau`` flatters each model with its own
  threshold, so a fixed ``tau`` (default 0.5, the soft-mask threshold
  ``--sigma`` that GAIN trains its attention against) is reported too.
* **Energy**: the share of a map's mass that lies on the pixels of its
  class, ``sum(cam[label_map == c]) / sum(cam[label_map != ignore])``;
  ignore pixels
  count on neither side. A flat (all-zero) map has energy 0.
* **Pointing game**: a hit when the map's argmax pixel is a pixel of its
  class. The argmax on an ignore pixel (-1) is a hit when a pixel of the
  class lies within :data:`POINTING_TOLERANCE` pixels (the width of VOC's
  void band around object outlines), otherwise it is not counted at all
  (VOC also marks whole difficult objects as void, and we cannot tell what
  they are); ignore pixels are never misses. A flat map is a miss.

Energy and pointing are averaged per class, then over the classes that
occur (like mAP and mean IU).

* **Zero CAMs**: the share of maps that are flat (all zero before the
  normalisation): the head's gradient finds nothing of the class at
  conv5_3. A classifier whose CAMs are mostly flat gives GAIN nothing to
  train on.
"""
import numpy as np

from datasets.voc import image_labels
from metrics.segmentation import segmentation_scores

TAUS = np.round(np.arange(1, 20) * 0.05, 2)  # 0.05, 0.10, ..., 0.95
DEFAULT_TAU = 0.5
POINTING_TOLERANCE = 5
IGNORE = -1


def gt_classes(label_map, n_class):
    """Foreground classes ``(C,)`` int (label values) present in
    ``label_map``."""
    return np.flatnonzero(image_labels(label_map, n_class)) + 1


def top_map(cams, classes):
    """``(best, arg)``: the highest value ``(H, W)`` and its class
    ``(H, W)`` int32 of maps ``(C, H, W)`` of label values ``(C,)``; with
    no map, zeros (background)."""
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
    """Share of the mass of ``cam`` ``(H, W)`` on pixels of class ``c``,
    ignore pixels of ``label_map`` ``(H, W)`` excluded; 0 for a flat map."""
    valid = label_map != IGNORE
    total = float(cam[valid].sum())
    return float(cam[label_map == c].sum()) / total if total > 0 else 0.0


def pointing_hit(cam, label_map, c, tolerance=POINTING_TOLERANCE):
    """Pointing game for one map: True (hit), False (miss) or None (the
    peak is on an ignore pixel away from the class: not counted)."""
    if cam.max() <= 0:
        return False
    y, x = np.unravel_index(int(cam.argmax()), cam.shape)
    if label_map[y, x] != IGNORE:
        return bool(label_map[y, x] == c)
    r = tolerance
    near = label_map[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1]
    return True if (near == c).any() else None


class AttentionMetrics(object):
    """Accumulator of attention mIoU (tau sweep), energy and pointing game.

    ``add(label_map, outputs)`` takes the label ``(H, W)`` and
    ``outputs['cams']`` ``(C, H, W)`` normalised maps of the classes
    ``outputs['cam_classes']`` ``(C,)`` (see ``models.class_cams``).
    """

    needs_cams = True

    def __init__(self, n_class, taus=TAUS, tau=DEFAULT_TAU,
                 tolerance=POINTING_TOLERANCE):
        self.n_class, self.tolerance = n_class, tolerance
        self.taus = np.sort(np.asarray(taus, dtype=np.float32))
        self.tau = float(tau)
        # sweep[k, t, a]: pixels of truth t whose top class a has a map that
        # reaches exactly the k lowest thresholds (predicted a for tau_j,
        # j < k, background above); fixed[r, t, a]: r = reaches self.tau.
        self.sweep = np.zeros((len(self.taus) + 1, n_class, n_class),
                              np.int64)
        self.fixed = np.zeros((2, n_class, n_class), np.int64)
        self.energy = np.zeros((2, n_class - 1))    # sum, count
        self.pointing = np.zeros((2, n_class - 1))  # hits, counted
        self.flat = 0

    def add(self, label_map, outputs):
        cams, classes = outputs['cams'], outputs['cam_classes']
        best, arg = top_map(cams, classes)
        keep = (label_map >= 0) & (label_map < self.n_class)
        best, arg, truth = best[keep], arg[keep], label_map[keep]
        k = np.searchsorted(self.taus, best, side='right')
        reached = (best >= np.float32(self.tau)).astype(np.int64)
        for hist, index in ((self.sweep, k), (self.fixed, reached)):
            flat = (index * self.n_class + truth) * self.n_class + arg
            hist += np.bincount(flat, minlength=hist.size).reshape(
                hist.shape)
        for cam, c in zip(cams, classes):
            self.flat += int(cam.max() <= 0)
            self.energy[:, c - 1] += energy_inside(cam, label_map, c), 1
            hit = pointing_hit(cam, label_map, c, self.tolerance)
            if hit is not None:
                self.pointing[:, c - 1] += float(hit), 1

    def hists(self):
        """Confusion matrices ``(T + 1, n, n)``: one per sweep threshold,
        then the fixed ``tau``'s."""
        hists = [_threshold_hist(self.sweep[j + 1:].sum(0),
                                 self.sweep[:j + 1].sum(0))
                 for j in range(len(self.taus))]
        hists.append(_threshold_hist(self.fixed[1], self.fixed[0]))
        return np.stack(hists)

    def result(self):
        scores = [segmentation_scores(h) for h in self.hists()]
        curve = [s['mean_iu'] for s in scores[:-1]]
        best = int(np.nanargmax(curve)) if not np.all(np.isnan(curve)) \
            else 0
        energy = _ratio(*self.energy)
        pointing = _ratio(*self.pointing)
        return dict(
            attention_miou=curve[best],
            attention_tau=round(float(self.taus[best]), 4),
            attention_miou_fixed=scores[-1]['mean_iu'],
            attention_fixed_tau=self.tau,
            attention_curve=dict(tau=[round(float(t), 4) for t in self.taus],
                                 miou=curve),
            attention_iu=scores[best]['iu'],
            energy=_nanmean(energy), energy_class=_nones(energy),
            pointing=_nanmean(pointing), pointing_class=_nones(pointing),
            pointing_counted=int(self.pointing[1].sum()),
            cam_pairs=int(self.energy[1].sum()),
            zero_cams=(self.flat / self.energy[1].sum()
                       if self.energy[1].sum() else None))


def _threshold_hist(reached, below):
    """Confusion matrix of pixels that ``reached`` the threshold (predicted
    their top class) plus those ``below`` it (predicted background)."""
    hist = reached.copy()
    hist[:, 0] += below.sum(axis=1)
    return hist


def _ratio(num, den):
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def _nanmean(a):
    return None if np.all(np.isnan(a)) else float(np.nanmean(a))


def _nones(a):
    return [None if np.isnan(v) else float(v) for v in a]
