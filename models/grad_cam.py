"""Grad-CAM at ``relu(conv5_3)`` of :class:`models.FCN8s`, the one place
that makes it: capture (``model.features``), channel weights from the
head's gradient, ReLU of the weighted sum, up-sampling (stride 16) and
min-max normalisation. :func:`attention_maps` is the differentiable map
GAIN trains; :func:`inference_cams` and :func:`class_cams` the same maps
without a graph, for metrics and pictures."""
import chainer
import chainer.functions as F
import numpy as np

from models.padding import cell_mask, masked_mean
from models.resize import resize_bilinear, upsample_each


def grad_cam(model, x, targets, double_backprop=False):
    """Grad-CAM maps ``(N, H, W)`` (a Variable, differentiable w.r.t. the
    trunk, not normalised) of images ``x`` ``(N, 3, H, W)``:
    ``w_k = mean_{ij} d(score)/d(A_k)``, ``map = ReLU(sum_k w_k A_k)`` with
    ``A = relu(conv5_3)``, up-sampled to ``(H, W)``. ``targets``: class
    indices ``(N,)`` or multi-hot ``(N, n_class - 1)`` (the labelled logits
    summed); ``double_backprop``: the weights keep their graph too
    (``--cam-grad full``)."""
    return cam_from_features(model, model.features(x), targets,
                             x.shape[2:], double_backprop)


def cam_from_features(model, conv5_3, targets, size, double_backprop=False,
                      sizes=None):
    """Grad-CAM from already computed ``relu(conv5_3)`` ``(N, C, h, w)``.

    Only the head is back-propagated (``chainer.grad`` from the scores to
    ``conv5_3``); the head runs without dropout so the map is the network's
    deterministic attention. Returns ``(N, H, W)`` with ``(H, W) = size``.
    With ``sizes`` ``(N, 2)`` (a padded batch, :mod:`models.padding`) each
    map is that of its image alone: the channel weights average its own
    cells, it is up-sampled onto its own pixels and is 0 on the padding.
    """
    xp = chainer.backend.get_array_module(conv5_3)
    if not isinstance(conv5_3, chainer.Variable):
        conv5_3 = chainer.Variable(conv5_3)
    onehot = _as_multi_hot(xp, targets, len(conv5_3), model.n_class - 1,
                           conv5_3.dtype)
    with chainer.using_config('train', False):
        scores = model.head(conv5_3, sizes)
    gA, = chainer.grad([F.sum(scores * onehot)], [conv5_3],
                       enable_double_backprop=double_backprop)
    if sizes is None:
        weights = F.mean(gA, axis=(2, 3), keepdims=True)
    else:       # gA is 0 beyond an image's cells: the head never saw them
        cells = -(-np.asarray(sizes) // model.feature_stride)
        weights = F.expand_dims(F.expand_dims(masked_mean(gA, cells), 2), 3)
    cam = F.relu(F.sum(F.broadcast_to(weights, conv5_3.shape) * conv5_3,
                       axis=1))
    if sizes is None:
        return resize_bilinear(cam, size, stride=model.feature_stride)
    return upsample_each(cam, sizes, size, model.feature_stride)


def normalize_cam(cam, eps=1e-5, sizes=None):
    """Min-max normalise each map of ``(N, H, W)`` to [0, 1]; a flat map
    becomes 0 instead of dividing by zero. With ``sizes`` ``(N, 2)`` (a
    padded batch, :mod:`models.padding`) the minimum and the maximum are
    those of each image's own pixels, and the padding is 0.

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
    values = low = high = flat.array
    if sizes is not None:
        own = cell_mask(sizes, cam.shape[1:], xp, bool).reshape(n, -1)
        low = xp.where(own, values, xp.inf)
        high = xp.where(own, values, -xp.inf)
    lo, hi = (F.select_item(flat, pick(a, axis=1).astype(np.int32))
              for pick, a in ((xp.argmin, low), (xp.argmax, high)))
    lo, hi = F.expand_dims(lo, 1), F.expand_dims(hi, 1)
    out = (flat - F.broadcast_to(lo, flat.shape)) / F.broadcast_to(
        hi - lo + eps, flat.shape)
    if sizes is not None:
        out = out * own.astype(out.dtype)
    return F.reshape(out, cam.shape)


def attention_maps(model, conv5_3, targets, size, double_backprop=False,
                   sizes=None):
    """Normalised Grad-CAMs ``(N, H, W)`` in [0, 1] from ``relu(conv5_3)``
    (see :func:`cam_from_features`), differentiable w.r.t. ``conv5_3``."""
    return normalize_cam(cam_from_features(model, conv5_3, targets, size,
                                           double_backprop, sizes),
                         sizes=sizes)


def inference_cams(model, x, targets, scales=(1.0,), flip=False):
    """:func:`attention_maps` of images ``x`` ``(N, 3, H, W)`` in test mode
    and without a graph: an ``(N, H, W)`` array on the model's device.

    Multi-scale and flipped CAMs (as IRN's, Ahn et al., CVPR 2019): the
    Grad-CAM of ``x`` bilinearly resized by each of ``scales`` (and, with
    ``flip``, of its horizontal mirror, mirrored back), each before
    normalisation and resized back to ``(H, W)``; their mean is min-max
    normalised as a single map is. IRN sums its maps and divides by the
    maximum; here scale 1.0 without flip is exactly the single map.
    """
    size = tuple(x.shape[2:])
    xp = chainer.backend.get_array_module(x)
    maps = []
    for scale in scales:
        scaled = x if scale == 1 else _resize_images(x, tuple(
            max(1, int(round(scale * side))) for side in size))
        for mirrored in (False, True)[:1 + bool(flip)]:
            if mirrored:
                cam = _cam_array(model, xp.ascontiguousarray(
                    scaled[..., ::-1]), targets)[..., ::-1]
            else:
                cam = _cam_array(model, scaled, targets)
            if cam.shape[1:] != size:
                with chainer.no_backprop_mode():
                    cam = resize_bilinear(cam, size).array
            maps.append(cam)
    with chainer.no_backprop_mode():
        return normalize_cam(sum(maps) / len(maps)).array


def _cam_array(model, x, targets):
    """:func:`grad_cam` of ``x`` ``(N, 3, H, W)``, an ``(N, H, W)`` array
    computed in test mode, the trunk without a graph."""
    with chainer.using_config('train', False):
        with chainer.no_backprop_mode():
            features = model.features(x).array
        return cam_from_features(model, features, targets, x.shape[2:]).array


def _resize_images(x, size):
    """Bilinear resize of images ``(N, C, H, W)`` to ``(N, C) + size``."""
    n, c = x.shape[:2]
    with chainer.no_backprop_mode():
        y = resize_bilinear(x.reshape((n * c,) + x.shape[2:]), size).array
    return y.reshape((n, c) + size)


def class_cams(model, x, classes, scales=(1.0,), flip=False):
    """Normalised Grad-CAMs, ``N`` float32 numpy arrays ``(C_i, H, W)`` in
    [0, 1], of the label values ``classes[i]`` (``1..n_class-1``) of each
    image of ``x`` ``(N, 3, H, W)``, in one batched call per scale and
    mirror (``scales``, ``flip``: :func:`inference_cams`)."""
    n, size = len(x), tuple(x.shape[2:])
    image = [i for i, cs in enumerate(classes) for _ in cs]
    target = [int(c) - 1 for cs in classes for c in cs]
    if not image:
        return [np.zeros((0,) + size, np.float32) for _ in range(n)]
    xp = model.xp
    cam = inference_cams(model, x[xp.asarray(image)],
                         xp.asarray(target, dtype=np.int32), scales, flip)
    cam = chainer.backend.CpuDevice().send(cam).astype(np.float32)
    bounds = np.cumsum([0] + [len(cs) for cs in classes])
    return [cam[bounds[i]:bounds[i + 1]] for i in range(n)]


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
