"""Paired bootstrap intervals of metric differences over a split's images.

Two models scored on the same images are compared on the same resamples
of those images (Efron and Tibshirani, "An Introduction to the
Bootstrap", 1993, ch. 13: the percentile interval), so the interval of a
difference reflects which images the split happens to hold, not the
models' own noise. Runs with several seeds (each a pair of models over
the same images) share the resamples: the interval is that of the mean
difference over the seeds, and the spread of the seeds' differences is
reported beside it (``sd_seeds``, ddof 1).

A metric here is a function ``f(records, index)`` of one model's
per-image records (the ``per_image()`` of the accumulators, as
``evaluate.py`` writes them to ``per_image.npz``) and the indices of a
resample ``(N,)`` (None: every image once), returning a number.
"""
import numpy as np

from metrics.attention import attention_scores, miou_at
from metrics.classification import classification_scores
from metrics.cue import cue_scores
from metrics.segmentation import split_segmentation_scores

N_RESAMPLES = 1000


def n_images(records):
    """The number of images of one model's per-image records."""
    for key in ('confusion', 'attention_sweep', 'logits'):
        if key in records:
            return len(records[key])
    raise ValueError('no per-image records (confusion, attention_sweep or '
                     'logits)')


def _counts(records, index):
    if index is None:
        return None
    return np.bincount(index, minlength=n_images(records))


def mean_iu(records, index=None):
    return split_segmentation_scores(records, _counts(records, index))[
        'mean_iu']


def mean_ap(records, index=None):
    return classification_scores(records, index)['map']


def attention(key):
    """The metric ``key`` of :func:`metrics.attention.attention_scores`."""
    def f(records, index=None):
        return attention_scores(records, _counts(records, index))[key]
    f.__name__ = key
    return f


def attention_miou_at(tau):
    """Attention mIoU at the sweep threshold ``tau``."""
    def f(records, index=None):
        return miou_at(records, tau, _counts(records, index))
    f.__name__ = 'attention_miou_at_%g' % tau
    return f


def attention_miou_tuned(records, index=None):
    """Attention mIoU at the model's tuned tau (``records['tuned_tau']``,
    chosen on another split: ``evaluate.py --tau-from``)."""
    return miou_at(records, float(records['tuned_tau']),
                   _counts(records, index))


def cue(key):
    """The metric ``key`` of :func:`metrics.cue.cue_scores`."""
    def f(records, index=None):
        return cue_scores(records, index)[key]
    f.__name__ = key
    return f


def metric(key):
    """The metric ``f(records, index)`` of a key of ``evaluate.py``'s
    metrics (``map``, ``mean_iu``, ``attention_miou_tuned``, a cue or
    positive-rate key, else a key of the attention scores)."""
    named = dict(map=mean_ap, mean_iu=mean_iu,
                 attention_miou_tuned=attention_miou_tuned)
    if key in named:
        return named[key]
    if key.startswith(('cue_', 'positive_rate')):
        return cue(key)
    return attention(key)


def resamples(n_images, n=N_RESAMPLES, seed=0):
    """``(n, n_images)`` indices: ``n`` resamples with replacement."""
    return np.random.RandomState(seed).randint(0, n_images, (n, n_images))


def _interval(samples, level):
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return [float(lo), float(hi)]


def paired_difference(metric, pairs, n_resamples=N_RESAMPLES, seed=0,
                      level=0.95, scale=1.0):
    """The difference ``metric(b) - metric(a)`` of paired models.

    Args:
        metric: ``f(records, index)`` (see the module docstring); pass two
            (``(f_a, f_b)``) where the models are scored differently (e.g.
            each at its own tuned threshold).
        pairs: ``[(records_a, records_b)]``, one per seed, every record
            over the same images in the same order.
        scale: unit of the result (100: percentage points).
    Returns:
        dict: ``mean`` (over the seeds), ``ci95`` (percentile interval of
        the seed-mean over the resamples), ``per_seed`` values with their
        own ``per_seed_ci95``, ``sd_seeds`` (ddof 1; None for one seed)
        and ``shown``: the interval of the mean and every seed's lie on
        the side of 0 of the mean.
    """
    f_a, f_b = metric if isinstance(metric, tuple) else (metric, metric)
    index = resamples(n_images(pairs[0][0]), n_resamples, seed)
    per_seed, boot = [], np.zeros((len(pairs), n_resamples))
    for s, (a, b) in enumerate(pairs):
        per_seed.append(scale * (f_b(b) - f_a(a)))
        for r, idx in enumerate(index):
            boot[s, r] = scale * (f_b(b, idx) - f_a(a, idx))
    per_seed_ci = [_interval(row, level) for row in boot]
    ci = _interval(boot.mean(axis=0), level)
    mean = float(np.mean(per_seed))
    shown = all(lo > 0 if mean > 0 else hi < 0
                for lo, hi in per_seed_ci + [ci])
    return dict(mean=mean, ci95=ci,
                per_seed=[float(v) for v in per_seed],
                per_seed_ci95=per_seed_ci,
                sd_seeds=(float(np.std(per_seed, ddof=1))
                          if len(per_seed) > 1 else None),
                shown=shown)


def differences(comparisons, pairs, n_resamples=N_RESAMPLES,
                metric_of=metric):
    """``{'b - a': {key: paired_difference(...)}}`` in percentage points
    (AUCs in points of 0.01) of ``comparisons`` ``[(b, a, keys)]``;
    ``pairs(a, b, key)``: the ``[(records of a, records of b)]`` of each
    seed; ``metric_of(key)``: the metric of a key."""
    out = {}
    for b, a, keys in comparisons:
        out['%s - %s' % (b, a)] = {
            key: paired_difference(metric_of(key), pairs(a, b, key),
                                   n_resamples, scale=100.0)
            for key in keys}
    return out


def value(metric, runs, n_resamples=N_RESAMPLES, seed=0, level=0.95,
          scale=1.0):
    """One model's ``metric`` over seeds: ``runs`` ``[records]``, one per
    seed, over the same images. Returns ``mean`` (over the seeds), its
    ``ci95`` over resamples of the images, ``per_seed`` and ``sd_seeds``
    (ddof 1; None for one seed)."""
    index = resamples(n_images(runs[0]), n_resamples, seed)
    per_seed = [scale * metric(r) for r in runs]
    boot = np.mean([[scale * metric(r, idx) for idx in index]
                    for r in runs], axis=0)
    return dict(mean=float(np.mean(per_seed)), ci95=_interval(boot, level),
                per_seed=[float(v) for v in per_seed],
                sd_seeds=(float(np.std(per_seed, ddof=1))
                          if len(per_seed) > 1 else None))
