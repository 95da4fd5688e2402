"""The measured operations: one training step or one inference call of
FCN8s on a random batch, built as the scripts build them."""
import copy

import chainer
import numpy as np

from models import FCN8s, grad_cam
from training.gain_loss import GAINLoss
from training.losses import ClassificationLoss, SegmentationLoss
from training.mixed_precision import loss_scale, set_precision
from training.trainer import make_optimizer

N_CLASS = 21              # PASCAL VOC: background + 20 labels
LABELS_PER_IMAGE = (2, 3, 1)   # image i has LABELS_PER_IMAGE[i % 3] labels
LR = 1e-5
# In the order of a round (reversed every other round): the two sides of
# each ratio of bench.report.RATIOS are neighbours. The mixed16 steps are
# --dtype mixed16's, by default on a GPU only (numpy has no fast float16
# matrix product: a CPU step takes 20 to 40 times longer).
OPS = ['seg_step_mixed16', 'seg_step', 'gain_joint_activations',
       'gain_joint_activations_mixed16', 'gain_joint_full',
       'gain_joint_mask-only', 'gain_per-class_mask-only',
       'gain_per-class_activations', 'gain_per-class_full', 'cls_step',
       'classify', 'grad_cam', 'evaluate']
MIXED16 = '_mixed16'
MIXED_OPS = [op for op in OPS if op.endswith(MIXED16)]
GAIN_OPS = [op for op in OPS if op.startswith('gain_') and op not in MIXED_OPS]
DESCRIPTION = dict(
    seg_step='FCN8s segmentation step (fwd+bwd+Adam)',
    cls_step='classifier-stage step (trunk frozen)',
    classify='classify forward (train=False)',
    grad_cam='Grad-CAM inference (grad_cam, train=False)',
    evaluate='evaluate: segment + classify forward',
    **{op: 'GAIN step am_mode=%s cam_grad=%s' % tuple(
        op[5:].rsplit('_', 1)) for op in GAIN_OPS})
DESCRIPTION.update({op: DESCRIPTION[op[:-len(MIXED16)]] + ', mixed16'
                    for op in MIXED_OPS})


def make_model(width, seed=0):
    """FCN8s with random weights; the zero-initialised score layers get
    small random values so that every path carries non-zero gradients."""
    np.random.seed(seed)
    model = FCN8s(n_class=N_CLASS, width=width)
    rng = np.random.RandomState(seed + 1)
    for name, p in model.namedparams():
        if 'score' in name and p.array.ndim > 1:
            p.array[...] = rng.normal(0, 0.01, p.shape)
    return model


def make_batch(batch, size, n_class=N_CLASS, seed=0):
    """A random batch in the layout of ``training_data`` plus the GAIN_ext
    flags: caffe-like images ``(N, 3, size, size)``, label maps with one
    block per labelled class (row 0 ignored), multi-hot labels and
    pixel-supervision flags (all False)."""
    rng = np.random.RandomState(seed)
    h = w = size
    x = rng.normal(0, 60, (batch, 3, h, w)).astype(np.float32)
    label_map = np.zeros((batch, h, w), dtype=np.int32)
    labels = np.zeros((batch, n_class - 1), dtype=np.int32)
    for i in range(batch):
        k = LABELS_PER_IMAGE[i % len(LABELS_PER_IMAGE)]
        for c in rng.choice(n_class - 1, k, replace=False):
            labels[i, c] = 1
            bh, bw = max(1, h // 3), max(1, w // 3)
            y0, x0 = rng.randint(0, h - bh + 1), rng.randint(0, w - bw + 1)
            label_map[i, y0:y0 + bh, x0:x0 + bw] = c + 1
    label_map[:, 0] = -1
    supervised = np.zeros(batch, dtype=bool)
    return x, label_map, labels, supervised


def erased_images(op, labels):
    """How many erased images a GAIN step's attention-mining pass takes."""
    return int(labels.sum() if 'per-class' in op else labels.any(1).sum())


def build(op, model, shared):
    """``(run, loss, optimizer)`` of ``op`` (see :data:`OPS`) on ``model``:
    ``run(x, label_map, labels, supervised)`` is one step or call.

    The ops of one model share their Adam optimizers through ``shared``,
    one per set of frozen links: chainer keeps the update rule on the
    parameter, so the classifier stage (other frozen links) and the
    mixed16 steps train copies of the model."""
    if op in MIXED_OPS:
        sub = _copy(shared, MIXED16, model)
        built = build(op[:-len(MIXED16)], sub['model'], sub)
        if loss_scale(built[2]) is None:
            set_precision(sub['model'], built[2], 'mixed16')
        return built

    def trained(loss, frozen, key, n_inputs=3):
        if key not in shared:
            shared[key] = make_optimizer(loss, LR, frozen)
        opt = shared[key]
        return (lambda *batch: opt.update(loss, *batch[:n_inputs]), loss, opt)

    if op == 'seg_step':   # the head gets no gradient: freezing it is free
        return trained(SegmentationLoss(model), model.head_links(), 'train')
    if op in GAIN_OPS:
        am_mode, cam_grad = op[5:].rsplit('_', 1)
        return trained(GAINLoss(model, am_mode=am_mode, cam_grad=cam_grad),
                       model.head_links(), 'train', 4)
    if op == 'cls_step':
        cls_model = _copy(shared, 'cls_model', model)['model']
        return trained(ClassificationLoss(cls_model, True),
                       cls_model.trunk_links(), 'cls')
    if op == 'classify':
        def run(x, *_):
            with chainer.using_config('train', False), \
                    chainer.no_backprop_mode():
                return model.classify(x)
    elif op == 'grad_cam':
        def run(x, label_map, labels, *_):
            with chainer.using_config('train', False):
                return grad_cam(model, x, labels)
    else:
        def run(x, *_):
            return model.predict(x)
    return run, None, None


def _copy(shared, key, model):
    """``shared[key]``, a dict holding a copy of ``model`` (made once)."""
    if key not in shared:
        shared[key] = dict(model=copy.deepcopy(model))
    return shared[key]
