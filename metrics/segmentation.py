"""The four figures of the FCN table (``fcn.utils.label_accuracy_score``'s
definitions) from accumulated confusion matrices."""
import numpy as np


def confusion_matrix(label_true, label_pred, n_class):
    """``(n_class, n_class)`` counts, rows true; pixels whose true label is
    outside ``0..n_class-1`` are skipped."""
    t = np.asarray(label_true).ravel()
    p = np.asarray(label_pred).ravel()
    keep = (t >= 0) & (t < n_class)
    return np.bincount(n_class * t[keep].astype(np.int64) + p[keep],
                       minlength=n_class ** 2).reshape(n_class, n_class)


def class_iu(hist):
    """IU of each class ``(..., n)`` of confusion matrices ``(..., n, n)``
    (rows true); NaN for a class absent from both truth and prediction."""
    hist = np.asarray(hist, dtype=np.float64)
    diag = np.diagonal(hist, axis1=-2, axis2=-1)
    with np.errstate(divide='ignore', invalid='ignore'):
        return diag / (hist.sum(axis=-1) + hist.sum(axis=-2) - diag)


def ratio(num, den):
    """``num / den``, NaN where ``den`` is 0."""
    den = np.asarray(den, np.float64)
    return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)[()]


def optional(value):
    """``float(value)``, None for NaN (JSON has no NaN)."""
    return None if np.isnan(value) else float(value)


def nan_mean(values):
    """Mean over the last axis leaving NaN out; NaN where all are."""
    values = np.asarray(values, dtype=np.float64)
    counted = ~np.isnan(values)
    return ratio(np.where(counted, values, 0).sum(-1), counted.sum(-1))


def segmentation_scores(hist):
    """Accuracy, Accuracy Class, Mean IU, FWAVACC and per-class IU (classes
    absent from truth and prediction left out, as in fcn)."""
    hist = np.asarray(hist, dtype=np.float64)
    diag = np.diag(hist)
    iu = class_iu(hist)
    acc_cls = ratio(diag, hist.sum(axis=1))
    freq = hist.sum(axis=1) / hist.sum()
    return dict(accuracy=float(diag.sum() / hist.sum()),
                accuracy_class=float(np.nanmean(acc_cls)),
                mean_iu=float(nan_mean(iu)),
                fwavacc=float((freq[freq > 0] * iu[freq > 0]).sum()),
                iu=[optional(v) for v in iu])


def weighted_sum(weights, per_image):
    """``(..., *S)``: the sum of ``per_image`` ``(N, *S)``, each counted
    ``weights`` ``(..., N)`` times (None: once)."""
    if weights is None:
        return np.asarray(per_image).sum(axis=0)
    return np.tensordot(np.asarray(weights, np.float64), per_image, axes=1)


class SegmentationMetrics(object):
    """Accumulator of the FCN table: ``add(label_map, outputs)`` with
    ``outputs['segmentation']`` ``(H, W)``; keeps every image's matrix."""

    def __init__(self, n_class):
        self.n_class, self.confusion = n_class, []

    def add(self, label_map, outputs):
        self.confusion.append(confusion_matrix(
            label_map, outputs['segmentation'], self.n_class))

    def per_image(self):
        """``confusion`` ``(N, n_class, n_class)``."""
        n = self.n_class
        return dict(confusion=np.array(self.confusion, np.int64).reshape(
            -1, n, n))

    def result(self):
        return segmentation_scores(self.per_image()['confusion'].sum(0))
