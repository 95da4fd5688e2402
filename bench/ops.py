"""The measured operations: each builds a closure that runs one step
(training) or one call (inference) of a model on a batch on a device."""
import copy

import chainer
import numpy as np

from models import FCN8s, grad_cam
from training.gain_loss import AM_MODES, CAM_GRADS, GAINLoss
from training.losses import ClassificationLoss, SegmentationLoss
from training.mixed_precision import loss_scale, set_precision
from training.trainer import make_optimizer

N_CLASS = 21              # PASCAL VOC: background + 20 labels

GAIN_OPS = ['gain_%s_%s' % (m, g) for m in AM_MODES for g in CAM_GRADS]
# The same steps with --dtype mixed16 (by default on a GPU only: numpy has
# no fast float16 matrix product, a CPU step takes 20 to 40 times longer).
MIXED16 = '_mixed16'
MIXED_OPS = ['seg_step' + MIXED16, 'gain_joint_activations' + MIXED16]
TRAIN_OPS = ['seg_step', 'cls_step'] + GAIN_OPS + MIXED_OPS
INFER_OPS = ['classify', 'grad_cam', 'evaluate']
OPS = TRAIN_OPS + INFER_OPS

DESCRIPTION = {
    'seg_step': 'FCN8s segmentation step (fwd+bwd+Adam)',
    'cls_step': 'classifier-stage step (trunk frozen)',
    'classify': 'classify forward (train=False)',
    'grad_cam': 'Grad-CAM inference (grad_cam, train=False)',
    'evaluate': 'evaluate: segment + classify forward',
}
for _name in GAIN_OPS:
    _m, _g = _name[5:].rsplit('_', 1)
    DESCRIPTION[_name] = 'GAIN step am_mode=%s cam_grad=%s' % (_m, _g)


for _name in MIXED_OPS:
    DESCRIPTION[_name] = DESCRIPTION[_name[:-len(MIXED16)]] + ', mixed16'


def gain_mode(op):
    """``'gain_per-class_full'`` -> ``('per-class', 'full')``."""
    return tuple(op[len('gain_'):].rsplit('_', 1))


def make_model(width, n_class=N_CLASS, seed=0):
    """FCN8s with random weights; the zero-initialised score layers get
    small random values so that every path carries non-zero gradients."""
    np.random.seed(seed)
    model = FCN8s(n_class=n_class, width=width)
    rng = np.random.RandomState(seed + 1)
    for name, p in model.namedparams():
        if 'score' in name and p.array.ndim > 1:
            p.array[...] = rng.normal(0, 0.01, p.shape)
    return model


class Op(object):
    """``run()``: one step/call; ``loss``/``optimizer`` for training ops
    (dtype checks), ``info`` for the report."""

    def __init__(self, run, loss=None, optimizer=None, info=None):
        self.run, self.loss, self.optimizer = run, loss, optimizer
        self.info = info or {}


def build(op, model, batch, device, lr=1e-5, share=None, optimizers=None):
    """An :class:`Op` of name ``op`` (see ``OPS``) on ``model`` (already on
    ``device``) and ``batch`` (numpy, sent to ``device`` here, once).

    ``share``: an Op of the same name whose loss and optimizer (its Adam
    state) this one uses, e.g. a warm-up on smaller images.
    ``optimizers``: a dict through which the ops of one process share their
    Adam optimizers (one per set of frozen links; chainer keeps the update
    rule on the parameter, so the classifier stage, whose frozen links
    differ, trains a copy of the model)."""
    if op in MIXED_OPS:
        return _mixed16(op, model, batch, device, lr, share, optimizers)
    x, label_map, labels, supervised = (device.send(a) for a in batch)
    info = dict(images=int(len(batch[0])), labels=int(batch[2].sum()))

    def setup(make_loss, frozen, key):
        if share is not None:
            return share.loss, share.optimizer
        loss = make_loss()
        if optimizers is None:
            return loss, make_optimizer(loss, lr, frozen)
        if key not in optimizers:
            optimizers[key] = make_optimizer(loss, lr, frozen)
        return loss, optimizers[key]

    head = model.head_links()
    if op == 'seg_step':
        # The head gets no gradient here: freezing it changes nothing.
        loss, opt = setup(lambda: SegmentationLoss(model), head, 'train')
        return Op(lambda: opt.update(loss, x, label_map, labels), loss,
                  opt, info)
    if op == 'cls_step':
        if optimizers is not None:
            if 'cls_model' not in optimizers:
                optimizers['cls_model'] = copy.deepcopy(model)
            model = optimizers['cls_model']
        frozen = model.trunk_links()
        loss, opt = setup(lambda: ClassificationLoss(model, True), frozen,
                          'cls')
        return Op(lambda: opt.update(loss, x, label_map, labels), loss,
                  opt, info)
    if op in GAIN_OPS:
        am_mode, cam_grad = gain_mode(op)
        loss, opt = setup(lambda: GAINLoss(model, am_mode=am_mode,
                                           cam_grad=cam_grad), head, 'train')
        info['erased_images'] = (info['labels'] if am_mode == 'per-class'
                                 else int(batch[2].any(axis=1).sum()))
        return Op(lambda: opt.update(loss, x, label_map, labels, supervised),
                  loss, opt,
                  info)
    if op == 'classify':
        def run():
            with chainer.using_config('train', False), \
                    chainer.no_backprop_mode():
                return model.classify(x)
        return Op(run, info=info)
    if op == 'grad_cam':
        def run():
            with chainer.using_config('train', False):
                return grad_cam(model, x, labels)
        return Op(run, info=info)
    if op == 'evaluate':
        return Op(lambda: model.predict(x), info=info)
    raise ValueError('unknown op %r (one of %s)' % (op, ', '.join(OPS)))


def _mixed16(op, model, batch, device, lr, share, optimizers):
    """A ``MIXED_OPS`` op: its float32 op on a copy of ``model`` that
    computes in mixed16, its optimizer scaling the loss as ``--dtype
    mixed16``'s does (a copy, like the classifier stage's, because chainer
    keeps the update rule on the parameter)."""
    shared = {} if optimizers is None else optimizers.setdefault(MIXED16, {})
    if 'model' not in shared:
        shared['model'] = copy.deepcopy(model)
    built = build(op[:-len(MIXED16)], shared['model'], batch, device, lr,
                  share, shared)
    if loss_scale(built.optimizer) is None:
        set_precision(shared['model'], built.optimizer, 'mixed16')
    return built
