"""The flags every script shares, and their checks."""
import argparse
import math

from runtime import distributed
from runtime.errors import UsageError

SEED_MAX = 2 ** 32 - 1


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
    """Argument parser with the flags every script takes (the data's are
    added by ``datasets.add_flags``); ``iterations``: the length of a
    training run without --iterations or --epochs."""
    p = _Parser(description=description, formatter_class=HelpFormatter)
    p.add_argument('--device', default='-1',
                   help='-1 for CPU, N for GPU N, or a chainer device '
                   'spec such as @numpy or @cupy:0')
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
        p.add_argument('--dtype', default='float32',
                       choices=('float32', 'mixed16', 'mixed16-emulated'),
                       help='mixed16: the layers compute in float16 on '
                       'float32 weights, with dynamic loss scaling (for '
                       'GPUs: numpy has no fast float16 matrix product); '
                       'mixed16-emulated: its roundings at float32 speed, '
                       'to check its numerics on a CPU')
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
