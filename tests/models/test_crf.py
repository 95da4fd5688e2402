"""models/crf.py: the dense CRF against the threshold rule and a
two-colour image."""
import numpy as np
import pytest

from models.crf import CRFSettings, label_probabilities, refine

NO_PAIRWISE = dict(gauss_sxy=3., gauss_compat=0., bilateral_sxy=10.,
                   bilateral_srgb=13., bilateral_compat=0., iterations=5)


@pytest.mark.parametrize('tau', [0.2, 0.45, 0.7])
def test_without_pairwise_terms_the_labels_are_the_thresholded_cams(tau):
    rng = np.random.RandomState(0)
    cams = rng.uniform(0, 1, (3, 20, 24)).astype(np.float32)
    classes = np.array([2, 3, 5])
    image = rng.randint(0, 256, (20, 24, 3)).astype(np.uint8)
    out = refine(image, cams, classes, CRFSettings(tau=tau, **NO_PAIRWISE))
    top = cams.max(0)
    expected = np.where(top >= tau, classes[cams.argmax(0)], 0)
    ties = np.abs(top - tau) < 1e-4
    assert 0 < (expected == 0).mean() < 1 and ties.sum() < 5
    np.testing.assert_array_equal(out[~ties], expected[~ties])
    assert out.dtype == np.uint8


def test_background_score_meets_the_top_cam_at_tau():
    tau = 0.3
    cams = np.array([[[tau, 0.1, 0.9, 0.0]], [[0.0, 0.05, 0.2, 0.0]]],
                    np.float32)                             # (2, 1, 4)
    p = label_probabilities(cams, tau)
    assert p.shape == (3, 1, 4)
    np.testing.assert_allclose(p.sum(0), 1, rtol=1e-6)
    np.testing.assert_allclose(p[0, 0, 0], p[1, 0, 0], rtol=1e-5)
    # (1 - 0.1) ** (log 0.3 / log 0.7) = 0.9 ** 3.3755 = 0.7007
    np.testing.assert_allclose(p[0, 0, 1], 0.7007 / (0.7007 + 0.15),
                               rtol=1e-3)
    np.testing.assert_allclose(p[:, 0, 3], [1, 0, 0])   # no evidence
    assert label_probabilities(np.zeros((0, 1, 4)), tau).tolist() == \
        [[[1, 1, 1, 1]]]


def test_a_label_spilling_over_a_colour_edge_is_snapped_to_it():
    """Left of column 20 red, right of it blue; the CAM of class 4 covers
    columns 0-25 with noise, so that thresholding spills 6 columns onto the
    blue side and has holes; the CRF's bilateral kernel follows the
    colours."""
    rng = np.random.RandomState(1)
    image = np.zeros((30, 40, 3), np.uint8)
    image[:, :20] = (200, 30, 30)
    image[:, 20:] = (30, 30, 200)
    cam = np.where(np.arange(40) < 26, 0.7, 0.1)[None].repeat(30, 0)
    cam = np.clip(cam + rng.normal(0, 0.2, cam.shape), 0, 1)[None]
    truth = np.where(np.arange(40) < 20, 4, 0)[None].repeat(30, 0)
    thresholded = np.where(cam[0] >= 0.4, 4, 0)
    assert (thresholded != truth).mean() > 0.1
    settings = CRFSettings(tau=0.4, gauss_sxy=3., gauss_compat=3.,
                           bilateral_sxy=20., bilateral_srgb=10.,
                           bilateral_compat=20., iterations=10)
    out = refine(image, cam.astype(np.float32), [4], settings)
    np.testing.assert_array_equal(out, truth)


def test_an_image_without_classes_is_background():
    out = refine(np.zeros((8, 9, 3), np.uint8), np.zeros((0, 8, 9)), [],
                 CRFSettings(tau=0.5, **NO_PAIRWISE))
    assert out.shape == (8, 9) and not out.any()
