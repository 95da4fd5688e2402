"""metrics/segmentation.py: the FCN table against fcn's own function."""
import fcn.utils
import numpy as np
import pytest

from metrics import confusion_matrix, segmentation_scores


@pytest.mark.parametrize('seed', range(5))
def test_fcn_table_equals_fcn_label_accuracy_score_on_random_data(seed):
    """Random label maps of several sizes with ignored pixels (-1), and
    classes missing from the truth, the prediction or both."""
    rng = np.random.RandomState(seed)
    n_class = 8
    # class 7 in neither, some others in one only
    present = rng.choice(n_class - 1, 5, replace=False)    # in the truth
    predicted = rng.choice(n_class - 1, 5, replace=False)  # predicted
    trues, preds = [], []
    for _ in range(4):
        shape = tuple(rng.randint(5, 30, 2))
        true = rng.choice(present, shape).astype(np.int32)
        true[rng.rand(*shape) < 0.1] = -1
        trues.append(true)
        preds.append(rng.choice(predicted, shape))
    assert set(present) ^ set(predicted)
    hist = sum(confusion_matrix(t, p, n_class) for t, p in zip(trues, preds))
    ours = segmentation_scores(hist)
    expected = fcn.utils.label_accuracy_score(trues, preds, n_class)
    np.testing.assert_allclose(
        [ours[k] for k in ('accuracy', 'accuracy_class', 'mean_iu',
                           'fwavacc')], expected, rtol=1e-12)
