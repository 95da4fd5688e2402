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


class SegmentationMetrics(object):
    """Accumulator of the FCN table over a split: ``add(label_map, outputs)``
    per image with ``outputs['segmentation']`` ``(H, W)``."""

    def __init__(self, n_class):
        self.hist = np.zeros((n_class, n_class), dtype=np.int64)

    def add(self, label_map, outputs):
        self.hist += confusion_matrix(label_map, outputs['segmentation'],
                                      len(self.hist))

    def result(self):
        return segmentation_scores(self.hist)
