"""metrics/cue.py: cue reliance against hand counts and scikit-learn."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from metrics.cue import CueMetrics, cue_arrays, cue_scores, mann_whitney_auc


@pytest.mark.parametrize('seed', range(4))
def test_auc_equals_sklearn_with_ties_and_repeats(seed):
    """Weights count each value that often: scikit-learn's AUC of the
    values repeated."""
    rng = np.random.RandomState(seed)
    a = rng.randint(0, 6, rng.randint(1, 40)).astype(float)
    b = rng.randint(0, 6, rng.randint(1, 40)).astype(float)
    values, in_a = np.r_[a, b], np.r_[np.ones(len(a)), np.zeros(len(b))]
    assert mann_whitney_auc(values, in_a, 1 - in_a) == pytest.approx(
        roc_auc_score(in_a, values), rel=1e-12)
    counts = rng.randint(0, 4, (2, len(values)))
    counts[:, [0, -1]] = 1                          # both groups present
    got = mann_whitney_auc(values, counts * in_a, counts * (1 - in_a))
    for row, w in zip(got, counts):
        assert row == pytest.approx(roc_auc_score(
            np.repeat(in_a, w), np.repeat(values, w)), rel=1e-12)
    assert np.isnan(mann_whitney_auc(values, 0 * in_a, 1 - in_a))


def test_gaps_rates_and_aucs_hand_computed():
    # one class; 6 images: (present, cue, logit)
    rows = [(0, 1, 2.0), (0, 1, -1.0), (0, 0, -2.0), (0, 0, 0.5),
            (1, 1, 3.0), (1, 0, -0.5)]
    records = dict(labels=np.array([[r[0]] for r in rows]),
                   cues=np.array([[r[1]] for r in rows], bool),
                   logits=np.array([[r[2]] for r in rows]))
    s = cue_scores(records)
    # absent with cue: logits 2, -1 -> 1/2 positive; without: -2, 0.5 -> 1/2
    assert s['cue_gap_absent'] == pytest.approx(0.0)
    # AUC absent: pairs (2>-2, 2>0.5, -1>-2, -1<0.5) -> 3/4
    assert s['cue_auc_absent'] == pytest.approx(0.75)
    assert s['cue_gap_present'] == pytest.approx(1.0)
    assert s['cue_auc_present'] == pytest.approx(1.0)
    assert s['positive_rate_absent'] == pytest.approx(0.5)
    assert s['positive_rate_present'] == pytest.approx(0.5)
    # a resample: images 0, 0, 2 -> absent with cue 2, 2; without -2
    r = cue_arrays(records, np.array([[2, 0, 1, 0, 0, 0]]))
    assert r['cue_gap_absent'] == [1.0] and r['cue_auc_absent'] == [1.0]
    assert np.isnan(r['cue_gap_present'][0])


def test_accumulator_keeps_each_images_cues():
    m = CueMetrics()
    for present, cue, logit in ((0, 1, 1.0), (0, 0, -1.0), (1, 1, 2.0)):
        m.add(None, dict(logits=np.array([logit]),
                         labels=np.array([present]),
                         cues=np.array([cue], bool)))
    assert m.per_image()['cues'].tolist() == [[True], [False], [True]]
    assert m.result()['cue_gap_absent'] == 1.0
