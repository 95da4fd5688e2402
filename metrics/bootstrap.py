"""Bootstrap intervals over seeds and test images (hierarchical).

A run's number varies with its training seed and with the test images, so
both are resampled (Davison and Hinkley, "Bootstrap Methods and their
Application", 1997, sec. 3.8; Ren et al., "Nonparametric bootstrapping for
hierarchical data", J. Appl. Stat. 2010): each replicate draws the seeds,
then the test images, with replacement, and takes the mean over the drawn
seeds. Seeds and images are crossed (every seed is scored on the same
images), so one image resample per replicate is shared by its seeds and
by both models of a pair (Owen, "The pigeonhole bootstrap", Ann. Appl.
Stat. 2007); drawing them anew per seed would shrink the images' share of
the variance. The interval is the replicates' percentile interval (Efron
and Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13); with
one seed, the image bootstrap.

A metric is ``f(records, weights=None)`` of one model's per-image records
(``per_image.npz``) and ``weights`` ``(R, N)``, how often each image
counts in each of ``R`` resamples, returning ``(R,)``; without weights,
the split's value.
"""
import numpy as np

from metrics import attention as att
from metrics.classification import average_precision, mean_average_precision
from metrics.cue import cue_arrays
from metrics.segmentation import class_iu, nan_mean, optional, weighted_sum

N_RESAMPLES = 1000
INTERVAL = ('hierarchical: seeds, then the test images (one image resample '
            'per replicate, shared by its seeds and paired models)')


def n_images(records):
    """The number of images of one model's records."""
    for key in ('confusion', 'attention_sweep', 'logits'):
        if key in records:
            return len(records[key])
    raise ValueError('no per-image records (confusion, attention_sweep or '
                     'logits)')


def mean_iu(records, weights=None):
    return nan_mean(class_iu(weighted_sum(weights, records['confusion'])))


def mean_ap(records, weights=None):
    return mean_average_precision(records['logits'], records['labels'],
                                  weights)[0]


def attention_miou_tuned(records, weights=None):
    """Attention mIoU at ``records['tuned_tau']`` (``--tau-from``)."""
    return att.miou_at(records, float(records['tuned_tau']), weights)


def _attention_ious(records, weights):
    """``(..., T + 1, n)``: the IU of each class at each sweep tau, then at
    the fixed tau."""
    return class_iu(att.attention_hists(records, weights))


def attention(key):
    """The attention figure ``key``: ``attention_miou_fixed``,
    ``attention_miou`` (best tau), ``zero_cams`` or a class mean of
    :data:`metrics.attention.CLASS_KEYS`."""
    if key == 'attention_miou_fixed':
        return lambda r, w=None: nan_mean(_attention_ious(r, w)[..., -1, :])
    if key == 'attention_miou':
        return lambda r, w=None: np.nanmax(nan_mean(
            _attention_ious(r, w)[..., :-1, :]), axis=-1)
    if key == 'zero_cams':
        return att.zero_cams
    if key in att.CLASS_KEYS:
        return lambda r, w=None: nan_mean(att.class_means(
            r, att.pair_values(r, key), w))
    raise KeyError('no bootstrap metric %r' % key)


def class_metric(key, c):
    """The metric ``key`` of class ``c`` alone: ``ap``, ``iou``,
    ``attention_iou_tuned``, ``attention_iou_fixed`` or a
    :data:`metrics.attention.CLASS_KEYS`."""
    if key == 'ap':
        return lambda r, w=None: average_precision(
            r['logits'][:, c - 1], r['labels'][:, c - 1], w)
    if key == 'iou':
        return lambda r, w=None: class_iu(weighted_sum(w, r['confusion']))[
            ..., c]
    if key == 'attention_iou_tuned':
        return lambda r, w=None: att.iu_at(r, float(r['tuned_tau']), w)[..., c]
    if key == 'attention_iou_fixed':
        return lambda r, w=None: _attention_ious(r, w)[..., -1, c]
    return lambda r, w=None: att.class_means(r, att.pair_values(r, key), w)[
        ..., c - 1]


def metric(key):
    """The metric of one of ``evaluate.py``'s keys."""
    named = dict(map=mean_ap, mean_iu=mean_iu,
                 attention_miou_tuned=attention_miou_tuned)
    if key in named:
        return named[key]
    if key.startswith(('cue_', 'positive_rate')):   # metrics.cue's
        return lambda r, w=None: cue_arrays(r, w)[key]
    return attention(key)


def draws(n_seeds, n_images, n_resamples=N_RESAMPLES, seed=0):
    """The seeds ``(R, S)`` and images ``(R, N)`` each replicate draws."""
    rng = np.random.RandomState(seed)
    images = rng.randint(0, n_images, (n_resamples, n_images))
    return rng.randint(0, n_seeds, (n_resamples, n_seeds)), images


def _interval(samples, level):
    """The percentile interval of the replicates where the metric is
    defined; None if nowhere."""
    samples = np.asarray(samples)[~np.isnan(samples)]
    if not len(samples):
        return None
    tail = 100 * (1 - level) / 2
    return [float(v) for v in np.percentile(samples, [tail, 100 - tail])]


def hierarchical(statistic, n_seeds, n_images, n_resamples=N_RESAMPLES,
                 seed=0, level=0.95):
    """The bootstrap of the mean over seeds of ``statistic(s, weights)``
    (seed ``s`` at image weights ``(R, N)``): ``mean``, ``ci95`` (seeds and
    images), ``per_seed`` with ``per_seed_ci95`` (images alone),
    ``sd_seeds`` (ddof 1; None for one seed) and ``interval``."""
    seeds, images = draws(n_seeds, n_images, n_resamples, seed)
    weights = np.ones((n_resamples + 1, n_images))   # row 0: the split
    weights[1:] = [np.bincount(i, minlength=n_images) for i in images]
    values = np.array([statistic(s, weights) for s in range(n_seeds)])
    per_seed, boot = values[:, 0], values[:, 1:]
    replicates = boot[seeds, np.arange(n_resamples)[:, None]].mean(axis=1)
    return dict(mean=optional(per_seed.mean()),
                ci95=_interval(replicates, level),
                per_seed=[optional(v) for v in per_seed],
                per_seed_ci95=[_interval(b, level) for b in boot],
                sd_seeds=(optional(np.std(per_seed, ddof=1))
                          if n_seeds > 1 else None),
                interval=INTERVAL)


def paired_difference(metric, pairs, n_resamples=N_RESAMPLES, seed=0,
                      level=0.95, scale=1.0):
    """:func:`hierarchical` of ``metric(b) - metric(a)`` over ``pairs``
    ``[(records_a, records_b)]``, one per seed, on the same images;
    ``metric`` may be ``(f_a, f_b)`` (e.g. each at its own tuned tau);
    ``scale`` 100: percentage points. ``shown``: ``ci95`` excludes 0."""
    f_a, f_b = metric if isinstance(metric, tuple) else (metric, metric)

    def difference(s, weights):
        a, b = pairs[s]
        return scale * (f_b(b, weights) - f_a(a, weights))
    out = hierarchical(difference, len(pairs), n_images(pairs[0][0]),
                       n_resamples, seed, level)
    out['shown'] = out['ci95'] is not None and bool(
        out['ci95'][0] > 0 or out['ci95'][1] < 0)
    return out


def differences(comparisons, pairs, n_resamples=N_RESAMPLES, metric_of=metric):
    """``{'b - a': {key: paired_difference(...)}}`` in points of 0.01 of
    ``comparisons`` ``[(b, a, keys)]``; ``pairs(a, b, key)`` gives each
    seed's ``(records of a, records of b)``."""
    out = {}
    for b, a, keys in comparisons:
        out['%s - %s' % (b, a)] = {
            key: paired_difference(metric_of(key), pairs(a, b, key),
                                   n_resamples, scale=100.0)
            for key in keys}
    return out


def value(metric, runs, n_resamples=N_RESAMPLES, seed=0, level=0.95,
          scale=1.0):
    """:func:`hierarchical` of one model's ``metric`` over ``runs``
    ``[records]``, one per seed."""
    return hierarchical(lambda s, weights: scale * metric(runs[s], weights),
                        len(runs), n_images(runs[0]), n_resamples, seed, level)


def class_values(keys, records, class_names):
    """``{class name: {key: value}}``: the split's :func:`class_metric`
    figures of one run (None where undefined; background skipped)."""
    return {name: {key: optional(class_metric(key, c)(records))
                   for key in keys}
            for c, name in enumerate(class_names[1:], 1)}


def per_class(keys, runs, class_names, n_resamples=N_RESAMPLES):
    """``{class name: {key: value(...)}}`` of the foreground classes over
    ``runs`` ``[records]``, one per seed."""
    return {name: {key: value(class_metric(key, c), runs, n_resamples)
                   for key in keys}
            for c, name in enumerate(class_names[1:], 1)}
