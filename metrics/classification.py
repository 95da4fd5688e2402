"""Multi-label classification: average precision per class and mAP."""
import numpy as np

from datasets.voc import image_labels


def average_precision(scores, labels):
    """Non-interpolated AP of one class: the mean, over the positives, of
    the precision at their rank (ties broken by a stable sort). ``nan``
    when the class has no positive. Without ties it equals scikit-learn's
    ``average_precision_score``; it is not the VOC devkit's interpolated
    AP (see the README).

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


def classification_scores(records, index=None):
    """``{'map', 'ap'}`` of :meth:`ClassificationMetrics.per_image`
    records, of the images ``index`` (a bootstrap resample; default all,
    in order)."""
    logits, labels = records['logits'], records['labels']
    if index is not None:
        logits, labels = logits[index], labels[index]
    m, aps = mean_average_precision(logits, labels)
    return {'map': m, 'ap': [None if np.isnan(a) else a for a in aps]}


class ClassificationMetrics(object):
    """Accumulator of mAP over a split: ``add(label_map, outputs)`` per image
    with ``outputs['logits']`` ``(n_class - 1,)``; the labels are
    ``outputs['labels']`` where given (image-level annotations), else the
    classes present in ``label_map``."""

    def __init__(self, n_class):
        self.n_class, self.scores, self.labels = n_class, [], []

    def add(self, label_map, outputs):
        self.scores.append(outputs['logits'])
        labels = outputs.get('labels')
        self.labels.append(image_labels(label_map, self.n_class)
                           if labels is None else labels)

    def per_image(self):
        """``logits`` and 0/1 ``labels``, both ``(N, n_class - 1)``."""
        k = self.n_class - 1
        return dict(logits=np.array(self.scores, np.float32).reshape(-1, k),
                    labels=np.array(self.labels, np.int32).reshape(-1, k))

    def result(self):
        return classification_scores(self.per_image())
