"""Command-line plumbing shared by every script: flags, devices, seeds,
output directories, config files and one-line errors."""
import argparse
import json
import math
import os
import platform
import random
import subprocess
import sys

import chainer
import numpy as np

from datasets import DATASETS, DatasetError
from models import ModelFileError
from training import distributed
from training.guards import TrainingStopped

USER_ERRORS = (ModelFileError, DatasetError)


class UsageError(ValueError):
    """A bad flag or path; reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """A bad flag is one line (``error: ...``), exit status 2, like every
    other user error."""

    def error(self, message):
        self.exit(2, 'error: %s (see %s --help)\n' % (message, self.prog))


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written; each flag's default once, after its
    help, unless it has none (None, False) or the help already says it."""

    def _get_help_string(self, action):
        text = action.help or ''
        if (not action.option_strings or 'default' in text or
                action.default in (None, argparse.SUPPRESS) or
                action.default is False):
            return text
        return text + ' (default: %(default)s)'


def parser(description, training=True, iterations=None):
    """Argument parser with the flags every script takes; ``iterations``:
    the length of a training run without --iterations or --epochs."""
    p = _Parser(description=description, formatter_class=HelpFormatter)
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
        p.add_argument('--val-data-dir', default=None,
                       help='dataset root of --val-split (default: '
                       '--data-dir), e.g. the real labels when training on '
                       'pseudo labels')
        p.add_argument('--iterations', type=int, default=None,
                       help='number of updates (default: %d unless --epochs '
                       'is given; overrides --epochs)' % iterations)
        p.add_argument('--epochs', type=float, default=None,
                       help='number of passes over the training split')
        p.add_argument('--batch-size', type=int, default=8,
                       help='images per update (per rank with '
                       '--communicator)')
        p.add_argument('--force', action='store_true',
                       help='start over in --out, removing its model.npz '
                       'and snapshots (a finished run is never overwritten '
                       'without it)')
        p.add_argument('--resume', nargs='?', const='latest', default=None,
                       metavar='SNAPSHOT',
                       help='continue from the newest good snapshot in --out '
                       '(fail if there is none; also continues a finished '
                       'run, e.g. with more --iterations), or from the '
                       'given snapshot file. Without it a rerun with the '
                       'same --out resumes when it finds a snapshot')
        p.add_argument('--snapshot-interval', type=int, default=100,
                       help='iterations between snapshots of the whole '
                       'trainer (one is also taken at the end and on '
                       'SIGINT/SIGTERM)')
        p.add_argument('--skip-bad', action='store_true',
                       help='skip unreadable or inconsistent samples (and '
                       'split entries without files) with a warning, '
                       'counted as bad_samples in the log, instead of '
                       'stopping on the first one')
        p.add_argument('--communicator', default=None,
                       choices=distributed.COMMUNICATORS,
                       help='data-parallel training on ChainerMN, run under '
                       'mpiexec -n K (naive on CPUs, pure_nccl on GPUs; '
                       'needs mpi4py and an MPI): each rank takes a shard '
                       'of the data and --batch-size images per step')
        # Debugging: train mode off (no dropout, no random flips), to
        # compare runs step by step (tests/test_distributed.py).
        p.add_argument('--deterministic', action='store_true',
                       help=argparse.SUPPRESS)
        # Debugging: every rank writes its final weights to DIR/rank<N>.npz.
        p.add_argument('--rank-weights', default=None, metavar='DIR',
                       help=argparse.SUPPRESS)
    return p


def given(args, name):
    """``args.<name>`` if its flag is on the command line, else None (to
    tell a default from an explicit value)."""
    flag = '--' + name.replace('_', '-')
    if any(a == flag or a.startswith(flag + '=') for a in sys.argv[1:]):
        return getattr(args, name)
    return None


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


def _finite(value):
    return value is not None and math.isfinite(value)


def check_flags(args):
    """UsageError for a numeric flag out of range (NaN and inf included);
    flags a script does not have are skipped."""
    def get(name):
        return getattr(args, name, None)

    for name in ('iterations', 'batch_size', 'snapshot_interval',
                 'attention_interval'):
        if get(name) is not None and get(name) <= 0:
            raise UsageError('--%s must be > 0, got %d'
                             % (name.replace('_', '-'), get(name)))
    for name in ('epochs', 'lr', 'omega'):
        if get(name) is not None and not (_finite(get(name)) and
                                          get(name) > 0):
            raise UsageError('--%s must be a finite number > 0, got %g'
                             % (name, get(name)))
    for name in ('weight_decay', 'cl_weight', 'am_weight', 'seg_weight',
                 'ext_weight'):
        if get(name) is not None and not (_finite(get(name)) and
                                          get(name) >= 0):
            raise UsageError('--%s must be a finite number >= 0, got %g'
                             % (name.replace('_', '-'), get(name)))
    if get('sigma') is not None and not 0 < get('sigma') < 1:
        raise UsageError('--sigma must be in (0, 1), got %g' % get('sigma'))
    if get('width') is not None and not 0 < get('width') <= 1:
        raise UsageError('--width must be in (0, 1], got %g' % get('width'))
    if get('resume') is not None and get('force'):
        raise UsageError('--resume and --force contradict each other')


def stop_trigger(args, default_iterations):
    check_flags(args)
    if args.iterations is not None:
        return args.iterations, 'iteration'
    if args.epochs is not None:
        return args.epochs, 'epoch'
    return default_iterations, 'iteration'


def prepare_out(out, force, product='model.npz', resume=None):
    """Create ``out``; refuse to reuse one that holds a finished run unless
    ``force`` (start over: its product and snapshots are removed) or
    ``resume`` (continue it)."""
    from training.snapshots import list_snapshots
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError('--out %s is a file, not a directory' % out)
    finished = os.path.exists(os.path.join(out, product))
    if finished and not force and resume is None:
        raise UsageError('--out %s already holds a finished run (%s); pass '
                         '--force to overwrite it or --resume to continue '
                         'it' % (out, product))
    try:
        if force:
            for _, path in list_snapshots(out):
                os.remove(path)
            if finished:
                os.remove(os.path.join(out, product))
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise UsageError('--out %s: %s' % (out, e.strerror or e))


def write_config(out, args, **extra):
    """Write the run's full configuration to ``out/config.json`` (rank 0
    of a data-parallel run, which also prints and records the effective
    batch size)."""
    context = distributed.current()
    if context.distributed:
        extra.update(context.describe(args))
        if context.is_writer:
            print(context.summary(args), flush=True)
    return context.on_writer(_write_config, out, args, **extra)


def _write_config(out, args, **extra):
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


def write_run_config(args, model, train, **extra):
    """``write_config`` with the architecture and the data of a training
    run."""
    return write_config(args.out, args, n_class=model.n_class,
                        width=model.width, data_dir=train.data_dir, **extra)


def run(main):
    """Run ``main()``; user errors become one line on stderr, exit 2;
    a training stopped on purpose (non-finite loss: 3, SIGINT/SIGTERM:
    128 + signal number, after a snapshot) one line too."""
    try:
        main()
    except (UsageError,) + USER_ERRORS as e:
        _fail('error: %s' % _one_line(e), 2, e)
    except TrainingStopped as e:
        _fail('%s: %s' % (e.prefix, _one_line(e)), e.exit_status, e)
    except KeyboardInterrupt as e:
        _fail('interrupted', 130, e)


def _fail(line, status, e):
    """Report and exit. In a data-parallel run an error that every rank
    raised together (``every_rank``) is reported by rank 0 and the ranks
    exit; one of a single rank names it and aborts the job, whose other
    ranks would wait for it forever."""
    context = distributed.current()
    together = getattr(e, 'every_rank', False)
    if context.size > 1 and not together:
        line += ' (rank %d of %d)' % (context.rank, context.size)
    if context.is_writer or not together:
        print(line, file=sys.stderr)
    if not together:
        context.abort(status)
    sys.exit(status)


def _one_line(e):
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def prepare(args, default_iterations):
    """Check flags, join the data-parallel run (``--communicator``, see
    :mod:`training.distributed`), make ``--out`` (rank 0), pick the device,
    seed everything (per rank) and open the datasets (wrapped in
    :class:`training.guards.SkipBadSamples` with ``--skip-bad``). Returns
    ``(device, stop_trigger, train, val)``."""
    from datasets import get_dataset
    from datasets.voc import missing_files
    from training.guards import SkipBadSamples
    stop = stop_trigger(args, default_iterations)
    context = distributed.setup(args)   # --communicator: see distributed.py
    context.on_writer(prepare_out, args.out, args.force,
                      resume=getattr(args, 'resume', None))
    device = context.device = get_device(context.device_spec(args.device))
    set_seed(context.rank_seed(), device)
    if getattr(args, 'deterministic', False):
        chainer.global_config.train = False    # no dropout, no flips
    skip = getattr(args, 'skip_bad', False)
    with missing_files('skip' if skip else 'error'):
        train = get_dataset(args.dataset, args.data_dir, args.split)
        val = (get_dataset(args.dataset, args.val_data_dir or args.data_dir,
                           args.val_split, train.class_names)
               if args.val_split else None)
    if skip:
        train = SkipBadSamples(train, 'train')
        val = SkipBadSamples(val, 'val') if val is not None else None
    return device, stop, train, val


def trainer_options(args):
    """The keyword arguments of :func:`training.trainer.build_trainer`
    that come from the shared flags."""
    return dict(snapshot_interval=args.snapshot_interval,
                resume=args.resume, force=args.force)


def train_iterator(dataset, batch_size):
    """Shuffled iterator over a training dataset (this rank's shard in a
    data-parallel run) that refuses batches of mixed image sizes with a
    one-line error."""
    from training.guards import SameSizeIterator
    dataset = distributed.current().scatter(dataset, shuffle=True)
    return SameSizeIterator(dataset, batch_size)


def val_iterator(val, batch_size):
    """One pass over this rank's shard of a val split (None without one)."""
    from datasets import training_data
    from training.guards import SameSizeIterator
    if val is None:
        return None
    return SameSizeIterator(distributed.current().scatter(training_data(val)),
                            batch_size, repeat=False, shuffle=False)


def iterators(train, val, batch_size):
    """Shuffled, flipped training iterator and a one-pass val iterator over
    ``(x, lbl, labels)`` examples."""
    from datasets import training_data
    return (train_iterator(training_data(train, flip=True), batch_size),
            val_iterator(val, batch_size))
