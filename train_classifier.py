#!/usr/bin/env python
"""Stage 1: train the GAIN classification head on a frozen FCN8s trunk.

The head (GAP of pool5 -> fc6_cl -> fc7_cl -> score_cl) learns multi-label
image classification with sigmoid cross-entropy; every trunk parameter stays
bit-identical.
"""
import chainer

from models import load_model
from models.fcn8s import CLASSIFICATION_HEAD
from training import cli
from training.losses import ClassificationLoss
from training.trainer import build_trainer, finish, make_optimizer


def main():
    p = cli.parser(__doc__)
    p.add_argument('--modelfile', required=True,
                   help='FCN8s npz (fcn\'s or one of this project\'s)')
    p.add_argument('--out', default='runs/classifier',
                   help='output directory')
    p.add_argument('--lr', type=float, default=1e-3, help='Adam alpha')
    args = p.parse_args()

    device, stop, train, val = cli.prepare(args, default_iterations=500)
    model, _ = load_model(args.modelfile, n_class=train.n_class)
    model.to_device(device)
    loss = ClassificationLoss(model)
    trunk = [l for l in model.children() if l.name not in CLASSIFICATION_HEAD]
    optimizer = make_optimizer(loss, args.lr, trunk)

    train_it, val_it = cli.iterators(train, val, args.batch_size)
    updater = chainer.training.StandardUpdater(train_it, optimizer,
                                               device=device)
    evaluator = (chainer.training.extensions.Evaluator(val_it, loss,
                                                       device=device)
                 if val_it else None)
    cli.write_config(args.out, args, n_class=model.n_class,
                     width=model.width, data_dir=train.data_dir)
    keys = ['main/loss', 'validation/main/loss', 'main/accuracy',
            'validation/main/accuracy']
    trainer = build_trainer(updater, stop, args.out, keys,
                            {'loss': keys[:2], 'accuracy': keys[2:]},
                            evaluator, **cli.trainer_options(args))
    finish(trainer, model, args.out)


if __name__ == '__main__':
    cli.run(main)
