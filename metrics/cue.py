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


def mann_whitney_auc(a, b):
    """P(X > Y) + P(X = Y) / 2 for X drawn from ``a``, Y from ``b``; nan
    when either is empty."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not len(a) or not len(b):
        return float('nan')
    values, inverse, counts = np.unique(np.concatenate([a, b]),
                                        return_inverse=True,
                                        return_counts=True)
    first = np.cumsum(counts) - counts          # 0-based rank of each value
    ranks = (first + (counts + 1) / 2.)[inverse]   # mean 1-based rank
    return float((ranks[:len(a)].sum() - len(a) * (len(a) + 1) / 2.) /
                 (len(a) * len(b)))


def cue_scores(records, index=None):
    """The cue figures of ``records`` (``logits``, 0/1 ``labels`` and bool
    ``cues``, each ``(N, K)``), of the images ``index`` (default all)."""
    logits, labels, cues = (np.asarray(records[k]) for k in
                            ('logits', 'labels', 'cues'))
    if index is not None:
        logits, labels, cues = logits[index], labels[index], cues[index]
    labels, cues, positive = labels.astype(bool), cues.astype(bool), \
        logits > 0
    out = {}
    for name, present in (('absent', ~labels), ('present', labels)):
        gaps, aucs = [], []
        for c in range(logits.shape[1]):
            with_cue = present[:, c] & cues[:, c]
            without = present[:, c] & ~cues[:, c]
            if with_cue.any() and without.any():
                gaps.append(positive[with_cue, c].mean() -
                            positive[without, c].mean())
                aucs.append(mann_whitney_auc(logits[with_cue, c],
                                             logits[without, c]))
        out['cue_gap_' + name] = float(np.mean(gaps)) if gaps else None
        out['cue_auc_' + name] = float(np.mean(aucs)) if aucs else None
        out['positive_rate_' + name] = (float(positive[present].mean())
                                        if present.any() else None)
    return out


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
        return cue_scores({k: np.array(v) for k, v in self.records.items()})
