#!/usr/bin/env python
"""Train FCN8s for segmentation and multi-label classification (the
stand-in for the pretrained FCN8s).

On the embedded dataset a thin FCN8s (``--width``) is trained from scratch;
``--modelfile`` starts from an existing FCN8s instead (e.g. fcn's
``fcn8s_from_caffe.npz``). The defaults are the schedule of the shipped
stand-in (models/pretrained/README.md): a trunk that carries a classifier,
which a trunk trained for segmentation only (``--cls-weight 0``) cannot.
Only the images with a mask are used: of a split with masks on some images
only (``--voc-layout joined``, an image list), the others are left out; a
split without any mask is refused.
"""
import argparse
import os

import chainer

import datasets
from datasets import pad_examples
from models import FCN8s
from models.io import load_model
from runtime import cli, flags
from runtime.errors import UsageError
from runtime.files import read_json
from training import distributed
from training.extensions.validation import MeanAPEvaluator, MeanIUEvaluator
from training.losses import SegmentationLoss
from training.mixed_precision import set_precision
from training.defaults import BATCH_SIZE, CPU
from training.run import begin_run, open_splits, start_run
from training.trainer import (add_training_flags, build_trainer, iterators,
                              make_optimizer, run_training, trainer_options)
from visualizations import term_panel

ITERATIONS = CPU['fcn_iterations']  # without --iterations or --epochs
WIDTH = CPU['width']                # of a model trained from scratch


def report(cls_weight, validated, map_validated):
    """``(keys, plots)``: the logged terms printed, and the panels of
    loss.png."""
    keys = ['main/loss', 'validation/main/loss']
    panels = [term_panel('seg', keys)]
    if cls_weight:
        keys += ['main/seg', 'main/cl']
        panels = [term_panel('loss', keys[:2]),
                  term_panel('seg', ['main/seg', 'validation/main/seg']),
                  term_panel('cl', ['main/cl', 'validation/main/cl'])]
    for key, shown in (('mean_iu', validated), ('map', map_validated)):
        if shown:
            keys.append('validation/main/' + key)
            panels.append(term_panel(key, ['validation/main/' + key]))
    return keys, {'loss': ('train_fcn.py: FCN8s segmentation', panels)}


def next_steps(args, data_dir):
    """The next command: on pseudo labels (``data_dir`` written by
    make_pseudo_labels.py) the model's evaluation on their source dataset,
    else a classification head trained on it."""
    model = os.path.join(args.out, 'model.npz')
    made = os.path.join(data_dir, 'pseudo_labels.json')
    if not os.path.isfile(made):
        return [cli.next_command(args, 'train_classifier.py', '--modelfile',
                                 model, '--out',
                                 cli.beside(args.out, 'classifier'))]
    source = read_json(made, '--data-dir')
    if not isinstance(source, dict):
        raise UsageError('%s: not the pseudo_labels.json of '
                         'make_pseudo_labels.py' % made)
    source = argparse.Namespace(dataset=source.get('dataset'),
                                data_dir=source.get('data_dir'),
                                device=args.device)
    return [cli.next_command(source, 'evaluate.py', '--no-attention',
                             '--modelfile', model, '--out',
                             args.out + '_eval')]


def main():
    p = flags.parser(__doc__, iterations=ITERATIONS)
    p.set_defaults(batch_size=BATCH_SIZE['fcn'])
    datasets.add_flags(p)
    p.add_argument('--out', default='runs/fcn', help='output directory')
    p.add_argument('--modelfile', default=None,
                   help='FCN8s npz to start from (default: train from '
                   'scratch)')
    p.add_argument('--width', type=float, default=None,
                   help='channel multiplier (default: %g from scratch, the '
                   'file\'s with --modelfile)' % WIDTH)
    p.add_argument('--lr', type=float, default=CPU['fcn_lr'],
                   help='Adam alpha')
    p.add_argument('--cls-weight', type=float, default=1.0,
                   help='weight of the GAIN head\'s classification loss '
                   '(0: segmentation only; > 0 also validates mAP)')
    add_training_flags(p, keep_best=('mean_iu', 'map'), weight_decay=1e-4)
    args = p.parse_args()
    if args.keep_best == 'map' and not args.cls_weight:
        raise UsageError('--keep-best map needs --cls-weight > 0 (the head '
                         'is trained and validated only then)')

    device, stop = start_run(args, ITERATIONS)
    train, val = open_splits(args, masks_only=True)
    if args.modelfile:
        model, _ = load_model(args.modelfile, n_class=train.n_class,
                              width=args.width)
    else:
        model = FCN8s(train.n_class, args.width or WIDTH)
    if args.cls_weight:
        model.head_trained_by.append('train_fcn.py --cls-weight %g'
                                     % args.cls_weight)
    model.to_device(device)
    loss = SegmentationLoss(model, args.cls_weight)
    optimizer = make_optimizer(loss, args.lr,
                               weight_decay=args.weight_decay)
    set_precision(model, optimizer, args.dtype)

    train_it, val_it = iterators(train, val, args)
    updater = chainer.training.StandardUpdater(
        train_it, optimizer, converter=pad_examples, device=device)
    evaluator = (MeanIUEvaluator(val_it, loss, converter=pad_examples,
                                 device=device)
                 if val_it is not None else None)
    validators = ([MeanAPEvaluator(model, val, args.batch_size)]
                  if val is not None and args.cls_weight and
                  distributed.is_writer() else [])
    begun = begin_run(args, model, train, stop)
    keys, plots = report(args.cls_weight, evaluator is not None,
                         bool(validators))
    trainer = build_trainer(updater, stop, args.out, keys, plots,
                            evaluator, validators=validators,
                            **trainer_options(args, begun))
    run_training(trainer, model, args.out, next_steps(args, train.data_dir))


if __name__ == '__main__':
    cli.run(main)
