"""metrics/classification.py: multi-label AP and mAP."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from metrics import average_precision, mean_average_precision
from metrics.classification import ClassificationMetrics


def test_average_precision_hand_computed():
    ap = average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])
    assert ap == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([0.1, 0.9], [1, 0]) == pytest.approx(0.5)


@pytest.mark.parametrize('seed', range(5))
def test_average_precision_equals_sklearn_with_ties(seed):
    rng = np.random.RandomState(seed)
    n = rng.randint(5, 200)
    labels = rng.rand(n) < rng.uniform(0.1, 0.9)
    labels[rng.randint(n)] = True
    scores = rng.normal(size=n) + labels * rng.uniform(0, 2)
    scores[rng.rand(n) < 0.3] = 0.5                 # tied scores
    assert average_precision(scores, labels) == pytest.approx(
        average_precision_score(labels, scores), rel=1e-12)


def test_weighted_average_precision_equals_sklearn_on_repeats():
    """A bootstrap resample's weights: scikit-learn's AP of the samples
    repeated that often."""
    rng = np.random.RandomState(7)
    scores = np.round(rng.normal(size=40), 1)       # some ties
    labels = rng.rand(40) < 0.4
    counts = rng.multinomial(40, [1 / 40.] * 40, 5)
    got = average_precision(scores, labels, counts)
    assert got.shape == (5,)
    for ap, w in zip(got, counts):
        assert ap == pytest.approx(average_precision_score(
            np.repeat(labels, w), np.repeat(scores, w)), rel=1e-12)


def test_map_leaves_out_classes_without_positives():
    rng = np.random.RandomState(0)
    scores = rng.normal(size=(50, 4))
    labels = rng.rand(50, 4) < 0.4
    labels[:, 2] = False
    m, aps = mean_average_precision(scores, labels)
    expected = [average_precision_score(labels[:, k], scores[:, k])
                for k in (0, 1, 3)]
    assert np.isnan(aps[2])
    assert m == pytest.approx(np.mean(expected), rel=1e-12)


def test_accumulator_takes_image_level_labels_when_given():
    """A class given by the image's annotation counts although its mask
    lacks it (an image-level-only sample has an all-ignore label map)."""
    m = ClassificationMetrics(n_class=3)
    empty = np.full((4, 4), -1, np.int32)
    m.add(empty, dict(logits=np.array([2.0, -1.0]), labels=np.array([1, 0])))
    m.add(empty, dict(logits=np.array([1.0, 3.0]), labels=np.array([0, 1])))
    records = m.per_image()
    assert records['labels'].tolist() == [[1, 0], [0, 1]]
    assert m.result()['map'] == 1.0
