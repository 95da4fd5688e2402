"""Cue reliance: how much a classifier follows a context cue that comes
with each class in training but not in the unbiased splits (``shapes``'
water under discs...). Per class ``c``, then averaged over the classes
where both groups exist:

* ``cue_gap_absent``: P(logit > 0 | c absent, cue) - P(logit > 0 | c
  absent, no cue), the false positives the cue adds; ``cue_gap_present``:
  the same on images that hold ``c``;
* ``cue_auc_absent``, ``cue_auc_present``: P(logit of c with the cue >
  logit without it), ties half (the Mann-Whitney AUC); 0.5: ignored;
* ``positive_rate_present``, ``positive_rate_absent``: P(logit > 0) over
  the present and the absent pairs, to tell a smaller gap from a
  classifier that says "yes" less often.
"""
import numpy as np

from metrics.segmentation import nan_mean, optional, ratio


def mann_whitney_auc(values, wa, wb):
    """P(X > Y) + P(X = Y) / 2, X and Y drawn from ``values`` ``(N,)``
    with weights ``wa`` and ``wb`` ``(..., N)``; NaN for an empty group."""
    unique, inverse = np.unique(values, return_inverse=True)
    onehot = np.eye(len(unique))[inverse]              # (N, U)
    hb = np.asarray(wb, np.float64) @ onehot
    below = np.cumsum(hb, axis=-1) - hb / 2            # ties count half
    num = ((np.asarray(wa, np.float64) @ onehot) * below).sum(axis=-1)
    return ratio(num, np.sum(wa, axis=-1) * np.sum(wb, axis=-1))


def _share(w, counted, hit):
    """The share of ``hit`` among the ``counted`` entries (``(N, ...)``
    bool), image ``i`` counted ``w[..., i]`` times."""
    n = len(counted)
    return ratio(w @ (counted & hit).reshape(n, -1).sum(1).astype(float),
                 w @ counted.reshape(n, -1).sum(1).astype(float))


def cue_arrays(records, weights=None):
    """The cue figures of ``records`` (``logits``, ``labels``, ``cues``,
    each ``(N, K)``), images counted ``weights`` ``(..., N)`` times; NaN
    where undefined."""
    logits, labels, cues = (np.asarray(records[k]) for k in
                            ('logits', 'labels', 'cues'))
    labels, cues, positive = labels.astype(bool), cues.astype(bool), logits > 0
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
    return {k: optional(v) for k, v in cue_arrays(records).items()}


class CueMetrics(object):
    """Accumulator of :func:`cue_scores`: ``add(label_map, outputs)`` with
    ``outputs`` ``logits``, ``labels`` and ``cues`` (bool), each ``(K,)``."""

    def __init__(self):
        self.records = {'logits': [], 'labels': [], 'cues': []}

    def add(self, label_map, outputs):
        for key, values in self.records.items():
            values.append(np.asarray(outputs[key]))

    def per_image(self):
        """``cues`` ``(N, K)`` (the rest is ClassificationMetrics')."""
        return {'cues': np.array(self.records['cues'], bool)}

    def result(self):
        return cue_scores({k: np.array(v) for k, v in self.records.items()})
