"""metrics/bootstrap.py: paired bootstrap intervals against numpy's."""
import numpy as np
import pytest

from metrics import bootstrap
from metrics.segmentation import SegmentationMetrics


def records(seed, n=30, n_class=3, flip=0.3):
    """Per-image confusion matrices of random predictions."""
    rng = np.random.RandomState(seed)
    m = SegmentationMetrics(n_class)
    for _ in range(n):
        truth = rng.randint(0, n_class, (6, 6))
        pred = np.where(rng.rand(6, 6) < flip,
                        rng.randint(0, n_class, (6, 6)), truth)
        m.add(truth, dict(segmentation=pred))
    return m.per_image()


def miou(hist):
    """Mean IU of a confusion matrix, written out."""
    ious = []
    for c in range(len(hist)):
        tp = hist[c, c]
        union = hist[c].sum() + hist[:, c].sum() - tp
        if union:
            ious.append(tp / union)
    return np.mean(ious)


def test_interval_equals_direct_resampling():
    pairs = [(records(0, flip=0.5), records(1, flip=0.2)),
             (records(2, flip=0.5), records(3, flip=0.25))]
    got = bootstrap.paired_difference(bootstrap.mean_iu, pairs,
                                      n_resamples=200, seed=7, scale=100)
    index = np.random.RandomState(7).randint(0, 30, (200, 30))
    per_seed = [[100 * (miou(b['confusion'][i].sum(0)) -
                        miou(a['confusion'][i].sum(0))) for i in index]
                for a, b in pairs]
    full = [100 * (miou(b['confusion'].sum(0)) - miou(a['confusion'].sum(0)))
            for a, b in pairs]
    assert got['per_seed'] == pytest.approx(full)
    assert got['mean'] == pytest.approx(np.mean(full))
    assert got['sd_seeds'] == pytest.approx(np.std(full, ddof=1))
    assert got['ci95'] == pytest.approx(
        np.percentile(np.mean(per_seed, 0), [2.5, 97.5]).tolist())
    for ci, row in zip(got['per_seed_ci95'], per_seed):
        assert ci == pytest.approx(np.percentile(row, [2.5, 97.5]).tolist())
    assert got['shown'] and got['mean'] > 0


def test_identical_models_differ_by_exactly_zero():
    r = records(4)
    got = bootstrap.paired_difference(bootstrap.mean_iu, [(r, r), (r, r)],
                                      n_resamples=50)
    assert got['mean'] == 0 and got['ci95'] == [0, 0]
    assert got['sd_seeds'] == 0 and not got['shown']


def test_shown_needs_every_seed_on_one_side():
    better, worse = records(5, flip=0.1), records(6, flip=0.6)
    got = bootstrap.paired_difference(
        bootstrap.mean_iu, [(worse, better), (better, worse)],
        n_resamples=100)
    assert not got['shown']
    assert got['per_seed'][0] > 0 > got['per_seed'][1]


def test_differences_of_comparisons_in_percentage_points():
    """Each comparison ``b - a`` and key, from the pairs of its seeds, in
    percentage points, against the mean IUs written out."""
    runs = {('a', 0): records(5, flip=0.5), ('b', 0): records(6, flip=0.2),
            ('a', 1): records(7, flip=0.5), ('b', 1): records(8, flip=0.3)}
    got = bootstrap.differences(
        [('b', 'a', ('mean_iu',))],
        lambda a, b, key: [(runs[a, s], runs[b, s]) for s in (0, 1)],
        n_resamples=20)
    assert list(got) == ['b - a'] and list(got['b - a']) == ['mean_iu']
    full = [100 * (miou(runs['b', s]['confusion'].sum(0)) -
                   miou(runs['a', s]['confusion'].sum(0))) for s in (0, 1)]
    assert got['b - a']['mean_iu']['per_seed'] == pytest.approx(full)
