"""The four figures of the FCN table, from an accumulated confusion matrix.

Same definitions as ``fcn.utils.label_accuracy_score``; accumulating the
matrix lets a split be evaluated without keeping every label map.
"""
import numpy as np


def confusion_matrix(label_true, label_pred, n_class):
    """``(n_class, n_class)`` counts, rows true, columns predicted; pixels
    whose true label is outside ``0..n_class-1`` (ignore: -1) are skipped."""
    t = np.asarray(label_true).ravel()
    p = np.asarray(label_pred).ravel()
    keep = (t >= 0) & (t < n_class)
    return np.bincount(n_class * t[keep].astype(np.int64) + p[keep],
                       minlength=n_class ** 2).reshape(n_class, n_class)


def segmentation_scores(hist):
    """Accuracy, Accuracy Class, Mean IU, FWAVACC and per-class IU of a
    confusion matrix (classes absent from both truth and prediction are
    left out of the means, as in fcn)."""
    hist = np.asarray(hist, dtype=np.float64)
    diag = np.diag(hist)
    with np.errstate(divide='ignore', invalid='ignore'):
        acc_cls = diag / hist.sum(axis=1)
        iu = diag / (hist.sum(axis=1) + hist.sum(axis=0) - diag)
    freq = hist.sum(axis=1) / hist.sum()
    return dict(accuracy=float(diag.sum() / hist.sum()),
                accuracy_class=float(np.nanmean(acc_cls)),
                mean_iu=float(np.nanmean(iu)),
                fwavacc=float((freq[freq > 0] * iu[freq > 0]).sum()),
                iu=[None if np.isnan(v) else float(v) for v in iu])


def split_segmentation_scores(records, weights=None):
    """:func:`segmentation_scores` of :meth:`SegmentationMetrics.per_image`
    records, each image counted ``weights`` times (a bootstrap resample;
    default once)."""
    confusion = records['confusion']
    w = np.ones(len(confusion)) if weights is None else weights
    return segmentation_scores(np.tensordot(w, confusion, axes=1))


class SegmentationMetrics(object):
    """Accumulator of the FCN table over a split: ``add(label_map, outputs)``
    per image with ``outputs['segmentation']`` ``(H, W)``; every image's
    confusion matrix is kept."""

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
        return split_segmentation_scores(self.per_image())
