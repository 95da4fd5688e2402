"""Cue reliance: how much a classifier's decisions follow a context cue
that comes with each class in training but not in the unbiased splits
(the ``shapes`` dataset's water under discs, brick behind rings...).

For each class ``c`` the images are split by whether ``c`` is present and
whether ``c``'s cue is in the image. Per class, then averaged over the
classes where both groups exist:

* ``cue_gap_absent``: P(logit > 0 | c absent, cue) - P(logit > 0 | c
  absent, no cue), the share of false positives the cue adds;
* ``cue_gap_present``: the same on images that hold ``c``;
* ``cue_auc_absent`` and ``cue_auc_present``: threshold-free, the
  probability that the logit of ``c`` on an image with the cue exceeds
  that on an image without it (ties count half; the Mann-Whitney AUC); 0.5
  is a classifier that ignores the cue;
* ``positive_rate_present`` and ``positive_rate_absent``: P(logit > 0)
  over the present and the absent (image, class) pairs, to tell a smaller
  gap from a classifier that says "yes" less often overall.
"""
import numpy as np

from metrics.segmentation import nan_mean, ratio


def mann_whitney_auc(values, wa, wb):
    """P(X > Y) + P(X = Y) / 2 for X drawn from ``values`` ``(N,)`` with
    weights ``wa`` ``(..., N)`` and Y with weights ``wb`` (how often each
    value counts in each group; the Mann-Whitney AUC); NaN where a group
    is empty."""
    unique, inverse = np.unique(values, return_inverse=True)
    onehot = np.eye(len(unique))[inverse]              # (N, U)
    hb = np.asarray(wb, np.float64) @ onehot
    below = np.cumsum(hb, axis=-1) - hb / 2            # ties count half
    num = ((np.asarray(wa, np.float64) @ onehot) * below).sum(axis=-1)
    return ratio(num, np.sum(wa, axis=-1) * np.sum(wb, axis=-1))


def _share(w, counted, hit):
    """The share ``(...)`` of ``hit`` among the ``counted`` entries (both
    ``(N, ...)`` bool), image ``i``'s counted ``w[..., i]`` times."""
    n = len(counted)
    return ratio(w @ (counted & hit).reshape(n, -1).sum(1).astype(float),
                 w @ counted.reshape(n, -1).sum(1).astype(float))


def cue_arrays(records, weights=None):
    """The cue figures ``(...)`` of ``records`` (``logits``, 0/1 ``labels``
    and bool ``cues``, each ``(N, K)``), images counted ``weights``
    ``(..., N)`` times (a bootstrap resample per row; default once); NaN
    where undefined."""
    logits, labels, cues = (np.asarray(records[k]) for k in
                            ('logits', 'labels', 'cues'))
    labels, cues, positive = labels.astype(bool), cues.astype(bool), \
        logits > 0
    w = (np.ones(len(logits)) if weights is None else
         np.asarray(weights, np.float64))
    out = {}
    for name, present in (('absent', ~labels), ('present', labels)):
        groups = [(present[:, c] & cues[:, c], present[:, c] & ~cues[:, c])
                  for c in range(logits.shape[1])]
        out['cue_gap_' + name] = nan_mean(np.stack(
            [_share(w, a, positive[:, c]) - _share(w, b, positive[:, c])
             for c, (a, b) in enumerate(groups)], axis=-1))
        out['cue_auc_' + name] = nan_mean(np.stack(
            [mann_whitney_auc(logits[:, c], w * a, w * b)
             for c, (a, b) in enumerate(groups)], axis=-1))
        out['positive_rate_' + name] = _share(w, present, positive)
    return out


def cue_scores(records):
    """:func:`cue_arrays` of the split, None where undefined."""
    return {k: None if np.isnan(v) else float(v)
            for k, v in cue_arrays(records).items()}


class CueMetrics(object):
    """Accumulator of :func:`cue_scores` over a split: ``add(label_map,
    outputs)`` per image with ``outputs['logits']`` ``(K,)``,
    ``outputs['labels']`` ``(K,)`` and ``outputs['cues']`` ``(K,)`` bool
    (class ``c``'s cue is in the image)."""

    def __init__(self):
        self.records = {'logits': [], 'labels': [], 'cues': []}

    def add(self, label_map, outputs):
        for key, values in self.records.items():
            values.append(np.asarray(outputs[key]))

    def per_image(self):
        """``cues`` ``(N, K)`` bool (``logits`` and ``labels`` are also
        :class:`metrics.ClassificationMetrics`' records)."""
        return {'cues': np.array(self.records['cues'], bool)}

    def result(self):
        return cue_scores({k: np.array(v) for k, v in
                           self.records.items()})
