"""Grad-CAM at ``relu(conv5_3)`` of :class:`models.FCN8s`."""
import chainer
import chainer.functions as F
import numpy as np

from models.resize import resize_bilinear


def grad_cam(model, x, targets, double_backprop=False):
    """Grad-CAM maps of a batch, up-sampled to the input size.

    ``weights = mean_{ij} d(score)/d(A_k)``, ``map = ReLU(sum_k w_k A_k)``
    with ``A = relu(conv5_3)``; not normalised.

    Args:
        model (FCN8s): the network.
        x: ``(N, 3, H, W)`` preprocessed images.
        targets: class indices ``(N,)`` or multi-hot ``(N, n_class - 1)``
            (the labelled logits are summed).
        double_backprop (bool): keep the graph of the weights too, so that
            a loss on the map differentiates them (``--cam-grad full``).
    Returns:
        ``(N, H, W)`` Variable, differentiable w.r.t. the trunk.
    """
    return cam_from_features(model, model.features(x), targets,
                             x.shape[2:], double_backprop)


def cam_from_features(model, conv5_3, targets, size, double_backprop=False):
    """Grad-CAM from already computed ``relu(conv5_3)`` ``(N, C, h, w)``.

    Only the head is back-propagated (``chainer.grad`` from the scores to
    ``conv5_3``); the head runs without dropout so the map is the network's
    deterministic attention. Returns ``(N, H, W)`` with ``(H, W) = size``.
    """
    xp = chainer.backend.get_array_module(conv5_3)
    if not isinstance(conv5_3, chainer.Variable):
        conv5_3 = chainer.Variable(conv5_3)
    onehot = _as_multi_hot(xp, targets, len(conv5_3), model.n_class - 1,
                           conv5_3.dtype)
    with chainer.using_config('train', False):
        scores = model.head(conv5_3)
    gA, = chainer.grad([F.sum(scores * onehot)], [conv5_3],
                       enable_double_backprop=double_backprop)
    weights = F.mean(gA, axis=(2, 3), keepdims=True)
    cam = F.relu(F.sum(F.broadcast_to(weights, conv5_3.shape) * conv5_3,
                       axis=1))
    return resize_bilinear(cam, size, stride=model.feature_stride)


def normalize_cam(cam, eps=1e-5):
    """Min-max normalise each map of ``(N, H, W)`` to [0, 1]; a flat map
    becomes 0 instead of dividing by zero.

    The minimum and the maximum each take their gradient through one
    element, as those of distinct values would. ``F.min``/``F.max`` give
    it to every tied element, and an up-sampled map ties whole blocks of
    pixels wherever its extreme lies in a border cell (edge clamping
    copies one value onto them): the gradient would be that many times
    too large.
    """
    n = cam.shape[0]
    flat = F.reshape(cam, (n, -1))
    xp = chainer.backend.get_array_module(flat)
    lo, hi = (F.select_item(flat, pick(flat.array, axis=1).astype(np.int32))
              for pick in (xp.argmin, xp.argmax))
    lo, hi = F.expand_dims(lo, 1), F.expand_dims(hi, 1)
    out = (flat - F.broadcast_to(lo, flat.shape)) / F.broadcast_to(
        hi - lo + eps, flat.shape)
    return F.reshape(out, cam.shape)


def _as_multi_hot(xp, targets, n, n_labels, dtype):
    t = xp.asarray(targets.array if isinstance(targets, chainer.Variable)
                   else targets)
    if t.ndim == 1:
        if len(t) != n:
            raise ValueError('targets has %d entries for %d images'
                             % (len(t), n))
        onehot = xp.zeros((n, n_labels), dtype=dtype)
        onehot[xp.arange(n), t.astype(np.int64)] = 1
        return onehot
    if t.shape != (n, n_labels):
        raise ValueError('targets must be (N,) or (N, %d), got %s'
                         % (n_labels, t.shape))
    return t.astype(dtype)
