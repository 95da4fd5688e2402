"""The flags every script shares, and their checks."""
import argparse
import math
from fractions import Fraction

from runtime.errors import UsageError

SEED_MAX = 2 ** 32 - 1
#: The ChainerMN communicators of ``--communicator``.
COMMUNICATORS = ('naive', 'flat', 'non_cuda_aware', 'pure_nccl')


#: The range of every numeric flag of the scripts (NaN and inf refused).
RANGES = dict(
    dict.fromkeys((
        'iterations', 'epochs', 'batch_size', 'snapshot_interval',
        'attention_interval', 'attention_val_images', 'num', 'top',
        'max_image_pixels', 'lr', 'omega', 'lr_power', 'lr_step',
        'schedule_iterations', 'val_interval', 'crf_iterations',
        'crf_gauss_sxy', 'crf_bilateral_sxy', 'crf_bilateral_srgb'),
        '(0, inf)'),
    **dict.fromkeys((
        'weight_decay', 'cls_weight', 'cl_weight', 'am_weight', 'seg_weight',
        'ext_weight', 'crf_gauss_compat', 'crf_bilateral_compat'),
        '[0, inf)'),
    **dict.fromkeys(('sigma', 'tau', 'crf_tau'), '(0, 1)'),
    **dict.fromkeys(('low', 'high', 'positive_share'), '[0, 1]'),
    lr_gamma='(0, 1]',
    width='[1/64, 1]')      # at least one channel in conv1_1 (64 x width)


def _bounds(interval):
    """``'(0, 1]'`` -> ``(0.0, 1.0, False, True)``."""
    low, high = (float(Fraction(v.strip())) if v.strip() != 'inf'
                 else math.inf for v in interval[1:-1].split(','))
    return low, high, interval[0] == '[', interval[-1] == ']'


def in_range(name, value):
    """Whether ``value`` of flag ``name`` (its ``args`` attribute) is
    finite and in its :data:`RANGES` entry, if any."""
    if name not in RANGES:
        return True
    low, high, low_in, high_in = _bounds(RANGES[name])
    return (math.isfinite(value) and (low <= value if low_in else low < value)
            and (value <= high if high_in else value < high))


def _range_error(name, value):
    flag = '--' + name.replace('_', '-')
    interval = RANGES[name]
    low, high, low_in, _ = _bounds(interval)
    if math.isinf(high):
        text = '%s %s' % ('>=' if low_in else '>', interval[1:].split(',')[0])
        if not isinstance(value, int):
            text = 'a finite number ' + text
    else:
        text = 'in ' + interval
    return UsageError('%s must be %s, got %s' % (
        flag, text, value if isinstance(value, int) else '%g' % value))


class _Parser(argparse.ArgumentParser):
    """A bad flag is one line, exit status 2; numeric flags are checked
    against :data:`RANGES` (:func:`check_flags`)."""

    def error(self, message):
        self.exit(2, 'error: %s (see %s --help)\n' % (message, self.prog))

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        check_flags(parsed)
        return parsed


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written; each flag's default once, unless it
    has none or the help says it."""

    def _get_help_string(self, action):
        text = action.help or ''
        if (not action.option_strings or 'default' in text or
                action.default in (None, argparse.SUPPRESS) or
                action.default is False):
            return text
        return text + ' (default: %(default)s)'


def parser(description, training=True, iterations=None):
    """A parser with the flags every script takes (``training``: those of
    a training run, ``iterations`` long by default)."""
    p = _Parser(description=description, formatter_class=HelpFormatter)
    p.add_argument('--device', default='-1',
                   help='-1 for CPU, N for GPU N, or a chainer device '
                   'spec such as @numpy or @cupy:0')
    p.add_argument('--seed', type=seed, default=0,
                   help='seed of every random draw (same seed, same '
                   'numbers on CPU)')
    if training:
        _training_flags(p, iterations)
    return p


def _training_flags(p, iterations):
    p.add_argument('--split', default='train', help='training split')
    p.add_argument('--val-split', default='val',
                   help='split evaluated during training ("" for none)')
    p.add_argument('--val-data-dir', default=None,
                   help='dataset root of --val-split (default: --data-dir), '
                   'e.g. the real labels when training on pseudo labels')
    p.add_argument('--iterations', type=int, default=None,
                   help='number of updates (default: %d unless --epochs '
                   'is given; overrides --epochs)' % iterations)
    p.add_argument('--epochs', type=float, default=None,
                   help='number of passes over the training split')
    p.add_argument('--batch-size', type=int, default=8,
                   help='images per update (per rank with --communicator)')
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
                   help='iterations between snapshots of the whole trainer '
                   '(one is also taken at the end and on SIGINT/SIGTERM)')
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
    p.add_argument('--communicator', default=None, choices=COMMUNICATORS,
                   help='data-parallel training on ChainerMN, run under '
                   'mpiexec -n K (naive on CPUs, pure_nccl on GPUs; '
                   'needs mpi4py and an MPI): each rank takes a shard '
                   'of the data and --batch-size images per step')
    # Debugging: train mode off (no dropout, no random flips), to
    # compare runs step by step (tests/training/test_distributed.py).
    p.add_argument('--deterministic', action='store_true',
                   help=argparse.SUPPRESS)
    # Debugging: every rank writes its final weights to DIR/rank<N>.npz.
    p.add_argument('--rank-weights', default=None, metavar='DIR',
                   help=argparse.SUPPRESS)


def add_cam_flags(p):
    """``--cam-scales`` and ``--flip``: multi-scale and flipped Grad-CAMs
    (``models.inference_cams``)."""
    p.add_argument('--cam-scales', type=positive, nargs='+', default=[1.0],
                   metavar='SCALE',
                   help='average the Grad-CAMs of the image resized by '
                   'each scale (e.g. 1.0 0.5 1.5 2.0, as IRN)')
    p.add_argument('--flip', action='store_true',
                   help='also average the Grad-CAMs of the mirrored '
                   'image(s), mirrored back')


def positive(text):
    """argparse type: a finite number > 0."""
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError('must be a finite number > 0, '
                                         'got %s' % text)
    return value


def seed(text):
    """argparse type: a seed of numpy's global generator, 0..2**32-1."""
    value = int(text)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError('must be in 0..%d, got %s'
                                         % (SEED_MAX, text))
    return value


def check_flags(args):
    """UsageError for a numeric flag out of its :data:`RANGES` entry, or
    ``--resume`` with ``--force``."""
    for name, value in sorted(vars(args).items()):
        if (isinstance(value, (int, float)) and not isinstance(value, bool)
                and not in_range(name, value)):
            raise _range_error(name, value)
    if getattr(args, 'resume', None) is not None and getattr(args, 'force',
                                                             False):
        raise UsageError('--resume and --force contradict each other')
