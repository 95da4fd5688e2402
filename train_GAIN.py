#!/usr/bin/env python
"""Stage 2: GAIN fine-tuning of FCN8s with its classification head frozen.

Each update adds the classification loss, the attention-mining loss on
images erased where the Grad-CAM looks, the segmentation loss and, on a
fixed subset of images with pixel supervision, GAIN_ext's attention loss.
"""
import functools
import math
import os
import sys

import chainer
import numpy as np

import datasets
from datasets import PixelSupervisionFlag, pad_examples, training_data
from metrics.attention import attention_warnings
from models.io import load_model
from runtime import cli, flags
from runtime.errors import UsageError
from runtime.files import output_path, write_text
from training import distributed
from training.extensions import tensorboard
from training.extensions.reports import AttentionSnapshot
from training.extensions.triggers import every_and_last
from training.extensions.validation import (AttentionEvaluator,
                                            MeanAPEvaluator)
from training.gain_loss import (AM_AVERAGES, AM_MODES, AM_SCORES, CAM_GRADS,
                                GAINLoss, parse_warmup)
from training.mixed_precision import set_precision
from training.defaults import BATCH_SIZE, CPU
from training.run import begin_run, open_splits, start_run, with_masks
from training.trainer import (add_training_flags, build_trainer,
                              make_evaluator, make_optimizer, run_training,
                              train_iterator, trainer_options,
                              training_view, val_iterator)
from training.updaters import GAINUpdater
from visualizations import term_panel


ITERATIONS = CPU['gain_iterations']  # without --iterations or --epochs


def add_gain_flags(p):
    p.add_argument('--modelfile', required=True,
                   help='model from train_classifier.py (with its head)')
    p.add_argument('--out', default='runs/gain', help='output directory')
    p.add_argument('--lr', type=float, default=CPU['gain_lr'],
                   help='Adam alpha')
    p.add_argument('--am-mode', default='per-class', choices=AM_MODES,
                   help='one erased image per ground-truth class, or one '
                   'per image from the summed labelled scores')
    p.add_argument('--cam-grad', default='activations', choices=CAM_GRADS,
                   help='how L_am\'s gradient flows through the Grad-CAM '
                   '(docs/GAIN.md)')
    p.add_argument('--am-score', default='sigmoid', choices=AM_SCORES,
                   help='score of the erased class in L_am')
    p.add_argument('--am-average', default='image', choices=AM_AVERAGES,
                   help='L_am as the mean over images (the paper), or over '
                   '(image, class) pairs')
    p.add_argument('--sigma', type=float, default=CPU['sigma'],
                   help='soft-mask threshold, in (0, 1)')
    p.add_argument('--omega', type=float, default=10.0,
                   help='soft-mask sharpness')
    for term, default in (('cl', 1.0), ('am', CPU['am_weight']),
                          ('seg', CPU['seg_weight']), ('ext', 0.0)):
        p.add_argument('--%s-weight' % term, type=float, default=default,
                       help='weight of L_%s' % term)
    p.add_argument('--ext-images', default='0',
                   help='images with a mask drawn for GAIN_ext: a count N or '
                   'a fraction in (0, 1) of the training split')
    p.add_argument('--am-warmup', default='0',
                   help='L_am off for N iterations (or Ne epochs)')
    p.add_argument('--ext-warmup', default='0',
                   help='L_ext off for N iterations (or Ne epochs)')
    p.add_argument('--am-on-negatives', action='store_true',
                   help='L_am also on images without a foreground class, '
                   'erased for their top-scoring class')
    p.add_argument('--head-dropout', action='store_true',
                   help='keep the frozen head\'s dropout in the L_cl and L_am '
                   'passes (docs/DEVIATIONS.md)')
    p.add_argument('--attention-interval', type=int, default=50,
                   help='iterations between attention pictures')
    p.add_argument('--attention-val-images', type=int, default=200,
                   help='the first N images with a mask of --val-split (else '
                   '--split) whose attention is validated')


def check_attention(evaluator, modelfile, class_names):
    """Print the attention of the validation images at the start, and
    warn loudly when GAIN has nothing to train on."""
    with chainer.using_config('train', False):
        quality = evaluator.evaluate_at_start()
    if quality['zero_cams'] is None:
        return
    print('attention at start (%d validation images): %.1f %% of the '
          'labelled (image, class) pairs have an all-zero Grad-CAM; pointing '
          'game %.1f %% (chance %.1f %%), energy in mask %.1f %%'
          % (evaluator.n_images, 100 * quality['zero_cams'],
             100 * (quality['pointing'] or 0),
             100 * (quality['pointing_chance'] or 0),
             100 * (quality['energy'] or 0)), flush=True)
    problems = attention_warnings(quality, class_names)
    if problems:
        print('WARNING: %s: %s; GAIN has nothing to train on. Is its trunk '
              'trained for classification (train_fcn.py --cls-weight 1) and '
              'its head trained (train_classifier.py)?'
              % (modelfile, '; '.join(problems)), file=sys.stderr, flush=True)


def parse_ext_images(spec):
    """``--ext-images`` as a number: a fraction in (0, 1) or a whole
    count."""
    try:
        value = float(spec)
    except ValueError:
        raise UsageError('--ext-images must be a count or a fraction, '
                         'got %r' % spec)
    if not (math.isfinite(value) and value >= 0 and
            (value < 1 or value == int(value))):
        raise UsageError('--ext-images %s: must be a fraction in (0, 1) '
                         'or a whole count' % spec)
    return value


def pick_ext_images(has_mask, value, seed):
    """Indices of the pixel-supervised images, drawn among those with a
    mask (``has_mask`` ``(N,)`` bool), fixed by ``seed``; ``value`` from
    :func:`parse_ext_images`: a count, or a fraction of all ``N``."""
    candidates = np.flatnonzero(has_mask)
    n = (int(round(value * len(has_mask))) if 0 < value < 1
         else int(value))
    if value > 0 and n == 0:
        raise UsageError('--ext-images %g selects none of the %d training '
                         'images; give a count >= 1 or a fraction >= %.3g'
                         % (value, len(has_mask), 0.5 / len(has_mask)))
    if n > len(candidates):
        raise UsageError('--ext-images %g: %d images with pixel supervision,'
                         ' but only %d of the %d training images have a mask'
                         % (value, n, len(candidates), len(has_mask)))
    rng = np.random.RandomState(seed)
    return np.sort(rng.choice(candidates, n, replace=False))


def pictured(dataset, n=4):
    """The examples of the attention pictures: up to ``n`` of one size
    (they are stacked into one batch) among the first 16, with a class to
    erase where there is one."""
    examples = training_data(dataset)
    examples = [examples[i] for i in range(min(16, len(examples)))]
    examples = [e for e in examples if e[2].any()] or examples[:1]
    return [e for e in examples if e[0].shape == examples[0][0].shape][:n]


def validation(val, loss, batch_size):
    """``(iterator, eval_func)`` of the validation of ``val`` (a None
    iterator without one): L_cl and L_seg of ``loss`` over its images with
    a mask, or L_cl alone over all of them when none has one."""
    if val is not None and val.has_mask.any():
        return val_iterator(with_masks(val), batch_size), loss.evaluate
    return (val_iterator(val, batch_size),
            functools.partial(loss.evaluate, seg=False))


def attention_validation(args, model, train, val, report, plots):
    """The validators of attention (pointing, energy) and mAP, their keys
    added to ``report`` and their panels to ``plots``; none where the
    validation split (or, without one, the training split) has no mask."""
    checked = val if val is not None else train
    if not checked.has_mask.any():
        print('no image of %s has a mask: attention quality (pointing game, '
              'energy, attention mIoU) is not measured'
              % ('--val-split' if val is not None else '--split'))
        return []
    attention = AttentionEvaluator(model, with_masks(checked),
                                   args.attention_val_images, args.batch_size)
    check_attention(attention, args.modelfile, checked.class_names)
    if val is None:
        return []
    report += ['validation/main/' + k for k in ('pointing', 'energy',
                                                'attention_miou', 'map')]
    plots['loss'][1].append(term_panel('map', ['validation/main/map']))
    plots['attention_val'] = (
        'train_GAIN.py: attention on %d validation images'
        % attention.n_images,
        [term_panel(k, ['validation/main/' + k])
         for k in AttentionEvaluator.KEYS])
    return [attention, MeanAPEvaluator(model, val, args.batch_size)]


def gain_flags(args):
    """``(ext_images, am_warmup, ext_warmup)`` of the flags, checked."""
    ext_images = parse_ext_images(args.ext_images)
    if (ext_images > 0) != (args.ext_weight > 0):
        raise UsageError(
            'GAIN_ext needs both --ext-images (pixel-supervised images) and '
            '--ext-weight (> 0); got --ext-images %s --ext-weight %g'
            % (args.ext_images, args.ext_weight))
    warmups = []
    for name in ('am_warmup', 'ext_warmup'):
        try:
            warmups.append(parse_warmup(getattr(args, name)))
        except ValueError as e:
            raise UsageError('--%s: %s' % (name.replace('_', '-'), e))
    return (ext_images, *warmups)


def gain_objective(args, model, train):
    """The :class:`GAINLoss` of the flags and the indices of the images
    with pixel supervision (GAIN_ext)."""
    ext_images, am_warmup, ext_warmup = gain_flags(args)
    ext_idx = pick_ext_images(train.has_mask, ext_images, args.seed)
    if args.seg_weight and not train.has_mask.any():
        print('warning: no image of --split %s has a mask: L_seg '
              '(--seg-weight %g) is 0 throughout'
              % (args.split, args.seg_weight), file=sys.stderr)
    weights = dict(cl=args.cl_weight, am=args.am_weight, seg=args.seg_weight,
                   ext=args.ext_weight)
    loss = GAINLoss(model, args.am_mode, args.cam_grad, args.am_score,
                    args.sigma, args.omega, weights, am_warmup, ext_warmup,
                    args.head_dropout, args.am_average, args.am_on_negatives)
    return loss, ext_idx


def report(args, weights):
    """``(keys, plots)``: the logged terms printed, and the panels of
    loss.png: those of non-zero weight."""
    terms = ['main/%s' % k for k in ('loss', 'cl', 'am', 'seg', 'ext')
             if weights.get(k, 1)]
    panels = [term_panel(t.split('/')[1], [t, 'validation/' + t]
                         if t in ('main/cl', 'main/seg') else [t])
              for t in terms]
    return terms + ['validation/main/seg'], {'loss': (
        'train_GAIN.py: GAIN fine-tuning, --am-mode %s' % args.am_mode,
        panels)}


def next_steps(args):
    """The commands that evaluate the model beside its start (on shapes
    with thresholds chosen on ``tune``) and draw their attention."""
    model = os.path.join(args.out, 'model.npz')
    scored = ['--modelfile', args.modelfile, model]
    steps = []
    if args.dataset == 'shapes':
        tune = cli.beside(args.out, 'eval_tune')
        steps.append(['--split', 'tune'] + scored + ['--out', tune])
        scored += ['--tau-from', os.path.join(tune, 'metrics.json')]
    steps.append(scored + ['--out', cli.beside(args.out, 'eval')])
    return [cli.next_command(args, 'evaluate.py', *s) for s in steps] + [
        cli.next_command(args, 'visualize.py', '--pretrained',
                         args.modelfile, '--trained', model, '--out',
                         cli.beside(args.out, 'vis'))]


def main():
    p = flags.parser(__doc__, iterations=ITERATIONS)
    p.set_defaults(batch_size=BATCH_SIZE['gain'])
    datasets.add_flags(p)
    add_gain_flags(p)
    add_training_flags(p, keep_best=('attention_miou', 'pointing', 'energy',
                                     'map'))
    args = p.parse_args()
    gain_flags(args)                # bad values refused before any work
    device, stop = start_run(args, ITERATIONS)
    train, val = open_splits(args)
    model, _ = load_model(args.modelfile, n_class=train.n_class,
                          require_head=True)
    if model.head_trained_by is None:
        print('warning: %s does not record which stage trained its head'
              % args.modelfile, file=sys.stderr)
    model.to_device(device)
    loss, ext_idx = gain_objective(args, model, train)
    optimizer = make_optimizer(loss, args.lr, model.head_links(),
                               args.weight_decay)
    set_precision(model, optimizer, args.dtype)
    train_it = train_iterator(
        PixelSupervisionFlag(training_view(train, args), ext_idx), train, args)
    updater = GAINUpdater(train_it, optimizer, converter=pad_examples,
                          device=device)
    val_it, eval_func = validation(val, loss, args.batch_size)
    evaluator = make_evaluator(val_it, loss, device, eval_func)
    begun = begin_run(args, model, train, stop,
                      ext_image_ids=[train.ids[i] for i in ext_idx])
    report_keys, plots = report(args, loss.weights)
    writer = distributed.is_writer()    # rank 0 of a data-parallel run
    validators = (attention_validation(args, model, train, val, report_keys,
                                       plots) if writer else [])
    trainer = build_trainer(updater, stop, args.out, report_keys, plots,
                            evaluator, validators=validators,
                            **trainer_options(args, begun))
    if writer:
        write_text(output_path(args.out, 'ext_images.txt'),
                   ''.join(train.ids[i] + '\n' for i in ext_idx))
        trainer.extend(AttentionSnapshot(
            model, pictured(val if val is not None else train), args.sigma,
            args.omega, args.am_mode, train.class_names,
            tensorboard.find(trainer)),
            trigger=every_and_last(args.attention_interval))
    run_training(trainer, model, args.out, next_steps(args))


if __name__ == '__main__':
    cli.run(main)
