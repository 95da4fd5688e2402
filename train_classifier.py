#!/usr/bin/env python
"""Stage 1: train the GAIN classification head on a frozen FCN8s trunk.

The head (GAP of pool5 -> fc6_cl -> fc7_cl -> score_cl) learns multi-label
image classification with sigmoid cross-entropy from a fresh start (a head
in the model file is discarded unless ``--keep-head``); every trunk
parameter stays bit-identical. With ``--train-trunk`` the trunk learns too
(classification pre-training of a model trained from scratch).
"""
import os

import chainer

import datasets
from datasets import pad_examples
from models import FCN8s
from models.io import load_model
from runtime import cli, flags
from runtime.errors import UsageError
from training import distributed
from training.extensions.validation import MeanAPEvaluator
from training.losses import ClassificationLoss
from training.mixed_precision import set_precision
from training.defaults import BATCH_SIZE, CPU
from training.run import begin_run, open_splits, start_run
from training.trainer import (add_training_flags, build_trainer, iterators,
                              make_evaluator, make_optimizer, run_training,
                              trainer_options)
from visualizations import term_panel


ITERATIONS = CPU['classifier_iterations']  # without --iterations, --epochs


def parse_args():
    p = flags.parser(__doc__, iterations=ITERATIONS)
    p.set_defaults(batch_size=BATCH_SIZE['classifier'])
    datasets.add_flags(p)
    p.add_argument('--modelfile', default=None,
                   help='FCN8s npz (fcn\'s or one of this project\'s); '
                   'without it a fresh FCN8s of --width, with --train-trunk')
    p.add_argument('--width', type=float, default=CPU['width'],
                   help='channel multiplier of a fresh model')
    p.add_argument('--train-trunk', action='store_true',
                   help='train the trunk too: classification pre-training '
                   'from scratch, the stand-in for ImageNet pre-training')
    p.add_argument('--keep-head', action='store_true',
                   help='continue from the head of --modelfile')
    p.add_argument('--out', default='runs/classifier',
                   help='output directory')
    p.add_argument('--lr', type=float, default=1e-3, help='Adam alpha')
    add_training_flags(p, keep_best=('map',))
    return p.parse_args()


def main():
    args = parse_args()
    device, stop = start_run(args, ITERATIONS)
    train, val = open_splits(args)
    if args.modelfile:
        model, has_head = load_model(args.modelfile, n_class=train.n_class)
        if not (args.keep_head and has_head):
            model.reset_head()
    elif args.train_trunk:
        model = FCN8s(train.n_class, args.width)
    else:
        raise UsageError('--modelfile is required unless --train-trunk '
                         'trains a fresh model')
    model.head_trained_by = (model.head_trained_by or []) + [
        'train_classifier.py' + (' --train-trunk' if args.train_trunk else '')]
    model.to_device(device)
    loss = ClassificationLoss(model, frozen_trunk=not args.train_trunk)
    frozen = () if args.train_trunk else model.trunk_links()
    optimizer = make_optimizer(loss, args.lr, frozen, args.weight_decay)
    set_precision(model, optimizer, args.dtype)

    train_it, val_it = iterators(train, val, args)
    updater = chainer.training.StandardUpdater(
        train_it, optimizer, converter=pad_examples, device=device)
    evaluator = make_evaluator(val_it, loss, device)
    validators = ([MeanAPEvaluator(model, val, args.batch_size)]
                  if val is not None and distributed.is_writer() else [])
    begun = begin_run(args, model, train, stop)
    keys = ['main/loss', 'validation/main/loss', 'main/accuracy',
            'validation/main/accuracy']
    panels = [term_panel('cl', keys[:2]), term_panel('accuracy', keys[2:])]
    if validators:
        keys.append('validation/main/map')
        panels.append(term_panel('map', ['validation/main/map']))
    plots = {'loss': ('train_classifier.py: GAIN classification head',
                      panels)}
    trainer = build_trainer(updater, stop, args.out, keys, plots,
                            evaluator, validators=validators,
                            **trainer_options(args, begun))
    run_training(trainer, model, args.out, [cli.next_command(
        args, 'train_GAIN.py', '--modelfile',
        os.path.join(args.out, 'model.npz'), '--out',
        cli.beside(args.out, 'gain'))])


if __name__ == '__main__':
    cli.run(main)
