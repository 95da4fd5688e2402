"""Multi-label classification: average precision per class and mAP, the
scores of the logits and the classes they find."""
import numpy as np

from datasets.voc import image_labels
from metrics.segmentation import nan_mean, optional, ratio


def average_precision(scores, labels, weights=None):
    """Non-interpolated AP ``(...)`` of one class, as scikit-learn's
    ``average_precision_score`` (not the VOC devkit's): the mean over the
    positives of the precision at their score (ties one threshold); NaN
    without a positive. ``scores``, ``labels`` (0/1): ``(N,)``;
    ``weights`` ``(..., N)``: how often each sample counts."""
    _, group = np.unique(-np.asarray(scores, np.float64),
                         return_inverse=True)     # high scores first
    onehot = np.eye(group.max(initial=-1) + 1)[group]
    w = np.ones(len(group)) if weights is None else np.asarray(weights, float)
    positives = (w * np.asarray(labels, bool)) @ onehot
    seen = np.cumsum(w @ onehot, axis=-1)
    precision = np.cumsum(positives, axis=-1) / np.where(seen > 0, seen, 1)
    return ratio((positives * precision).sum(axis=-1), positives.sum(axis=-1))


def mean_average_precision(scores, labels, weights=None):
    """``(mAP, AP per class)`` of ``(N, K)`` scores and labels; classes
    without a positive are left out of the mean."""
    aps = np.stack([average_precision(scores[:, k], labels[:, k], weights)
                    for k in range(scores.shape[1])], axis=-1)
    return nan_mean(aps), aps


class ClassificationMetrics(object):
    """Accumulator of mAP: ``add(label_map, outputs)`` with
    ``outputs['logits']`` ``(n_class - 1,)`` and ``outputs['labels']``
    (default: the classes in ``label_map``)."""

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
        r = self.per_image()
        m, aps = mean_average_precision(r['logits'], r['labels'])
        return {'map': float(m), 'ap': [optional(a) for a in aps]}


def sigmoid(z):
    """Overflow-free logistic function."""
    return 0.5 * (1 + np.tanh(0.5 * np.asarray(z, np.float64)))


def scored_classes(logits, top, wanted=None):
    """The label values ``(C,)``, sorted, of the classes that multi-label
    ``logits`` ``(K,)`` score above 50 % (logit > 0), at most the ``top``
    highest, at least the highest one, among ``wanted`` (label values) if
    given."""
    candidates = (wanted if wanted is not None
                  else np.arange(1, len(logits) + 1))
    # rank by logit: sigmoids of confident classes all round to 1
    order = np.argsort(-logits[candidates - 1], kind='stable')[:top]
    scoring = order[logits[candidates[order] - 1] > 0]
    return np.sort(candidates[scoring if len(scoring) else order[:1]])
