"""Multi-label classification: average precision per class and mAP."""
import numpy as np

from datasets.voc import image_labels


def average_precision(scores, labels):
    """Non-interpolated AP of one class: the mean, over the positives, of
    the precision at their rank (ties broken by a stable sort). ``nan``
    when the class has no positive.

    Args:
        scores: ``(N,)`` scores; labels: ``(N,)`` 0/1.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if not labels.any():
        return float('nan')
    order = np.argsort(-scores, kind='stable')
    hits = labels[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def mean_average_precision(scores, labels):
    """``(mAP, [AP per class])`` of ``(N, K)`` scores and 0/1 labels;
    classes without a positive are left out of the mean."""
    aps = [average_precision(scores[:, k], labels[:, k])
           for k in range(scores.shape[1])]
    return float(np.nanmean(aps)) if not np.all(np.isnan(aps)) else \
        float('nan'), aps


class ClassificationMetrics(object):
    """Accumulator of mAP over a split: ``add(label_map, outputs)`` per image
    with ``outputs['logits']`` ``(n_class - 1,)``; the labels are the
    classes present in ``label_map``."""

    def __init__(self, n_class):
        self.n_class, self.scores, self.labels = n_class, [], []

    def add(self, label_map, outputs):
        self.scores.append(outputs['logits'])
        self.labels.append(image_labels(label_map, self.n_class))

    def result(self):
        m, aps = mean_average_precision(np.stack(self.scores),
                                        np.stack(self.labels))
        return {'map': m, 'ap': [None if np.isnan(a) else a for a in aps]}
