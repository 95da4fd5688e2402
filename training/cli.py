"""Command-line plumbing shared by every script: flags, devices, seeds,
output directories, config files and one-line errors."""
import argparse
import json
import os
import platform
import random
import subprocess
import sys

import chainer
import numpy as np

from datasets import DATASETS, DatasetError
from models import ModelFileError

USER_ERRORS = (ModelFileError, DatasetError)


class UsageError(ValueError):
    """A bad flag or path; reported as one line, exit status 2."""


def parser(description, training=True):
    """Argument parser with the flags every script takes."""
    p = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--device', default='-1',
                   help='-1 for CPU, N for GPU N, or a chainer device '
                   'spec such as @numpy or @cupy:0')
    p.add_argument('--dataset', default='shapes', choices=DATASETS,
                   help='embedded synthetic dataset or a VOC-format '
                   'directory')
    p.add_argument('--data-dir', default=None,
                   help='dataset root (default: the generated shapes cache, '
                   'or ~/data/datasets/VOC/VOCdevkit/VOC2012)')
    p.add_argument('--seed', type=int, default=0,
                   help='seed of every random draw (same seed, same '
                   'numbers on CPU)')
    if training:
        p.add_argument('--split', default='train', help='training split')
        p.add_argument('--val-split', default='val',
                       help='split evaluated during training ("" for none)')
        p.add_argument('--iterations', type=int, default=None,
                       help='number of updates (overrides --epochs)')
        p.add_argument('--epochs', type=float, default=None,
                       help='number of passes over the training split')
        p.add_argument('--batch-size', type=int, default=8,
                       help='images per update')
        p.add_argument('--force', action='store_true',
                       help='overwrite a finished run in --out')
    return p


def positive(kind):
    """argparse type: a number > 0."""
    def parse(text):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError('must be > 0, got %s' % text)
        return value
    parse.__name__ = kind.__name__
    return parse


def get_device(spec):
    """``chainer.get_device`` of a flag value (ints as in chainer v6)."""
    try:
        spec = int(spec)
    except ValueError:
        pass
    try:
        device = chainer.get_device(spec)
    except Exception as e:
        raise UsageError('--device %s: %s' % (spec, str(e).splitlines()[0]))
    device.use()
    return device


def set_seed(seed, device=None):
    random.seed(seed)
    np.random.seed(seed)
    if device is not None and device.xp is not np:
        device.xp.random.seed(seed)


def stop_trigger(args, default_iterations):
    if args.iterations is not None and args.iterations <= 0:
        raise UsageError('--iterations must be > 0, got %d' % args.iterations)
    if args.epochs is not None and args.epochs <= 0:
        raise UsageError('--epochs must be > 0, got %g' % args.epochs)
    if args.batch_size <= 0:
        raise UsageError('--batch-size must be > 0, got %d' % args.batch_size)
    if args.iterations is not None:
        return args.iterations, 'iteration'
    if args.epochs is not None:
        return args.epochs, 'epoch'
    return default_iterations, 'iteration'


def prepare_out(out, force, product='model.npz'):
    """Create ``out``; refuse to reuse one that holds a finished run."""
    if os.path.exists(os.path.join(out, product)) and not force:
        raise UsageError('--out %s already holds a finished run (%s); pass '
                         '--force to overwrite it' % (out, product))
    os.makedirs(out, exist_ok=True)


def write_config(out, args, **extra):
    """Write the run's full configuration to ``out/config.json``."""
    config = dict(vars(args))
    config.update(extra)
    config['command'] = ' '.join([os.path.basename(sys.argv[0])] +
                                 sys.argv[1:])
    config['versions'] = dict(python=platform.python_version(),
                              chainer=chainer.__version__,
                              numpy=np.__version__)
    try:
        config['git_commit'] = subprocess.run(
            ['git', 'rev-parse', 'HEAD'], capture_output=True, text=True,
            cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        pass
    path = os.path.join(out, 'config.json')
    with open(path + '.tmp', 'w') as f:
        json.dump(config, f, indent=2, sort_keys=True, default=str)
    os.replace(path + '.tmp', path)
    return config


def run(main):
    """Run ``main()``; user errors become one line on stderr, exit 2."""
    try:
        main()
    except (UsageError,) + USER_ERRORS as e:
        print('error: %s' % e, file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)


def prepare(args, default_iterations):
    """Check flags, make ``--out``, pick the device, seed everything and
    open the datasets. Returns ``(device, stop_trigger, train, val)``."""
    from datasets import get_dataset
    stop = stop_trigger(args, default_iterations)
    if getattr(args, 'lr', 1) <= 0:
        raise UsageError('--lr must be > 0, got %g' % args.lr)
    prepare_out(args.out, args.force)
    device = get_device(args.device)
    set_seed(args.seed, device)
    train = get_dataset(args.dataset, args.data_dir, args.split)
    val = (get_dataset(args.dataset, args.data_dir, args.val_split)
           if args.val_split else None)
    return device, stop, train, val


def iterators(train, val, batch_size):
    """Shuffled, flipped training iterator and a one-pass val iterator over
    ``(x, lbl, labels)`` examples."""
    from chainer.iterators import SerialIterator
    from datasets import training_data
    train_it = SerialIterator(training_data(train, flip=True), batch_size)
    val_it = (SerialIterator(training_data(val), batch_size, repeat=False,
                             shuffle=False) if val is not None else None)
    return train_it, val_it
