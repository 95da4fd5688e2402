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
from training import distributed, outdir
from training.guards import TrainingStopped

USER_ERRORS = (ModelFileError, DatasetError, outdir.OutputError)
SEED_MAX = 2 ** 32 - 1
# Flags that may differ when a run is resumed: how long it goes on, where
# it runs and how often it saves. Every other one shapes the training.
RESUMABLE = ('iterations', 'epochs', 'resume', 'force', 'device',
             'snapshot_interval', 'skip_bad', 'attention_interval',
             'communicator', 'rank_weights')


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
    p.add_argument('--seed', type=seed, default=0,
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


def seed(text):
    """argparse type: a seed of numpy's global generator, 0..2**32-1."""
    value = int(text)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError('must be in 0..%d, got %s'
                                         % (SEED_MAX, text))
    return value


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


def prepare_out(out, force, resume=None, modelfile=None):
    """Create and lock ``out``; refuse one that holds a finished run
    unless ``force`` or ``resume``, or that holds ``modelfile`` (see
    :func:`training.outdir.claim_training`). Nothing is removed here:
    ``--force`` moves the old run aside in :func:`write_run_config`."""
    outdir.claim_training(out, force, resume, modelfile)


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
    run, once every input is checked: a resume whose training flags differ
    from the run's config.json is refused (UsageError naming them); with
    ``--force`` the old run is moved aside now (:mod:`training.outdir`)."""
    extra.update(n_class=model.n_class, width=model.width,
                 data_dir=train.data_dir)
    distributed.current().on_writer(_begin_run, args, extra)
    return write_config(args.out, args, **extra)


def _begin_run(args, extra):
    from training.snapshots import list_snapshots
    if args.force:
        claim = outdir.claimed(args.out)
        if claim is not None:
            claim.start_over()
    elif args.resume is not None or list_snapshots(args.out):
        changed = changed_flags(args.out, args, extra)
        if changed:
            raise UsageError(
                '--out %s holds a run trained with other flags: %s; '
                'resuming it would mix two runs: rerun with the flags of its '
                'config.json, or pass --force to start over'
                % (args.out, ', '.join(changed)))


def _short(value):
    if isinstance(value, str):
        return value
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + '...'


def changed_flags(out, args, extra):
    """``--flag NEW (was OLD)`` for each flag of ``args`` and entry of
    ``extra`` that shapes the training (not in :data:`RESUMABLE`) and
    differs from ``out/config.json``; [] without a readable one."""
    try:
        with open(os.path.join(out, 'config.json')) as f:
            old = json.load(f)
    except (OSError, ValueError):
        return []
    if not isinstance(old, dict):
        return []
    new = json.loads(json.dumps(dict(vars(args), **extra), default=str))
    changed = []
    for key in sorted(set(new) & set(old) - set(RESUMABLE)):
        a, b = old[key], new[key]
        if a == b or (isinstance(a, str) and isinstance(b, str) and
                      os.path.realpath(a) == os.path.realpath(b)):
            continue
        name = '--' + key.replace('_', '-') if key in vars(args) else key
        changed.append('%s %s (was %s)' % (name, _short(b), _short(a)))
    return changed


def run(main):
    """Run ``main()``; user errors become one line on stderr, exit 2;
    a training stopped on purpose (non-finite loss: 3, SIGINT/SIGTERM:
    128 + signal number, after a snapshot) one line too, and so does a
    file that cannot be written (exit 1). Then the ``--out`` it claimed is
    released (:func:`training.outdir.release_all`)."""
    ok = False
    try:
        main()
        ok = True
    except (UsageError,) + USER_ERRORS as e:
        _fail('error: %s' % _one_line(e), 2, e)
    except TrainingStopped as e:
        _fail('%s: %s' % (e.prefix, _one_line(e)), e.exit_status, e)
    except KeyboardInterrupt as e:
        _fail('interrupted', 130, e)
    except OSError as e:        # a file that cannot be written (disk full)
        _fail('error: %s%s' % (e.filename + ': ' if e.filename else '',
                               e.strerror or _one_line(e)), 1, e)
    finally:
        outdir.release_all(ok)


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
                      resume=getattr(args, 'resume', None),
                      modelfile=getattr(args, 'modelfile', None))
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
