"""Dense CRF refinement of CAM pseudo labels: Krähenbühl & Koltun,
"Efficient Inference in Fully Connected CRFs with Gaussian Edge
Potentials" (NIPS 2011), as DeepLab (Chen et al., ICLR 2015) and SEC
(Kolesnikov & Lampert, ECCV 2016) refine their maps, through pydensecrf.

The labels of an image are background and its image-level classes. Their
unary is ``-log p`` with ``p`` the normalised scores ``(b, cam_1, ...,
cam_C)``: the normalised CAMs of the classes and the background score of
PSA and IRN (Ahn & Kwak, CVPR 2018), ``b = (1 - max_c cam_c) ** alpha``,
with ``alpha = log(tau) / log(1 - tau)`` so that the background wins where
``max_c cam_c < tau``: without pairwise terms the CRF's labels are those of
thresholding at ``tau`` (``metrics.pseudo_label`` with ``low = high =
tau``). Mean-field inference with a Gaussian kernel (smoothness: ``sxy``
pixels, weight ``compat``) and a bilateral one (appearance: ``sxy``
pixels, ``srgb`` colour levels, weight ``compat``), Potts compatibility.
"""
import collections

import numpy as np
import pydensecrf.densecrf as dcrf

#: The CRF's parameters (a compat of 0: no such kernel).
CRFSettings = collections.namedtuple('CRFSettings', (
    'tau', 'gauss_sxy', 'gauss_compat', 'bilateral_sxy', 'bilateral_srgb',
    'bilateral_compat', 'iterations'))
#: Probabilities are clipped here before the log (pydensecrf's default).
MIN_PROBABILITY = 1e-5


def label_probabilities(cams, tau):
    """``(1 + C, H, W)`` probabilities of background and the classes of
    normalised CAMs ``(C, H, W)``."""
    cams = np.asarray(cams, np.float32)
    top = cams.max(axis=0) if len(cams) else np.zeros(cams.shape[1:],
                                                      np.float32)
    alpha = np.log(tau) / np.log1p(-tau)
    scores = np.concatenate([((1 - top) ** alpha)[None], cams])
    return scores / np.maximum(scores.sum(axis=0), MIN_PROBABILITY)


def refine(image, cams, classes, settings):
    """``(H, W)`` uint8 dense-CRF labels (0 or one of ``classes`` ``(C,)``)
    of an ``(H, W, 3)`` uint8 RGB image and its classes' normalised CAMs
    ``(C, H, W)``."""
    p = label_probabilities(cams, settings.tau)
    n_labels, h, w = p.shape
    crf = dcrf.DenseCRF2D(w, h, n_labels)
    crf.setUnaryEnergy(np.ascontiguousarray(
        -np.log(np.maximum(p, MIN_PROBABILITY)).reshape(n_labels, -1)))
    if settings.gauss_compat:
        crf.addPairwiseGaussian(sxy=settings.gauss_sxy,
                                compat=settings.gauss_compat)
    if settings.bilateral_compat:
        crf.addPairwiseBilateral(
            sxy=settings.bilateral_sxy, srgb=settings.bilateral_srgb,
            rgbim=np.require(image, np.uint8, 'CW'),  # a writable buffer
            compat=settings.bilateral_compat)
    q = np.asarray(crf.inference(settings.iterations))
    values = np.concatenate([[0], np.asarray(classes, np.int64)])
    return values[q.argmax(axis=0).reshape(h, w)].astype(np.uint8)
