"""The schedules and settings of the ``shapes`` pipeline that the demo and
the experiment run, and the command lines they make of them.

``cpu``: 2 CPU cores, the shipped stand-in; its GAIN weights and sigma
were chosen on the ``tune`` split (never on ``test``) by ``tune.py``, whose
table is in models/pretrained/README.md. ``gpu``: one GPU, a wider
stand-in trained first, the paper's alpha = 1, sigma = 0.5 and L_e weight
10 with L_seg weight 1 (not tuned: no GPU was at hand).
"""
import os

from training.defaults import BATCH_SIZE, CPU

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAND_IN = os.path.join(HERE, 'models', 'pretrained', 'fcn8s_shapes_v3.npz')

PRESETS = {
    'cpu': dict(CPU),       # the training scripts' defaults
    'gpu': dict(width=0.25, fcn_iterations=1500, fcn_lr=1e-3,
                classifier_iterations=1000, gain_iterations=300,
                gain_lr=3e-4, am_weight=1.0, seg_weight=1.0, sigma=0.5,
                ext_images=60, ext_weight=10.0),
}

#: The GAIN variants: their flags on top of the preset's.
VARIANTS = {
    'gain': {},
    'control': dict(am_weight=0.0),            # the same schedule, no L_am
    'gain_ext': dict(ext=True),
    'gain_no_seg': dict(seg_weight=0.0),       # the paper's loss
}


def fcn_args(cfg, seed=0):
    """train_fcn.py flags of the stand-in FCN8s (segmentation and
    classification)."""
    return ['--width', cfg['width'], '--cls-weight', 1, '--iterations',
            cfg['fcn_iterations'], '--batch-size', BATCH_SIZE['fcn'],
            '--lr', cfg['fcn_lr'], '--seed', seed, '--snapshot-interval', 250]


def classifier_args(cfg, modelfile, seed):
    """train_classifier.py flags: a fresh head on the frozen trunk."""
    return ['--modelfile', modelfile, '--iterations',
            cfg['classifier_iterations'], '--batch-size',
            BATCH_SIZE['classifier'], '--seed', seed]


def gain_args(cfg, modelfile, seed, variant='gain'):
    """train_GAIN.py flags of a :data:`VARIANTS` entry."""
    v = dict(cfg, **VARIANTS[variant])
    args = ['--modelfile', modelfile, '--iterations', v['gain_iterations'],
            '--batch-size', BATCH_SIZE['gain'], '--lr', v['gain_lr'],
            '--am-weight', v['am_weight'], '--seg-weight', v['seg_weight'],
            '--sigma', v['sigma'], '--seed', seed, '--attention-interval',
            v['gain_iterations']]
    if v.get('ext'):
        args += ['--ext-weight', v['ext_weight'], '--ext-images',
                 v['ext_images']]
    return args


def add_preset_flags(parser):
    """``--preset`` and one flag per preset value (overriding it), and
    ``--stand-in``."""
    presets = '; '.join('%s: %s' % (name, ', '.join(
        '%s %s' % kv for kv in sorted(values.items())))
        for name, values in sorted(PRESETS.items()))
    parser.add_argument('--preset', choices=sorted(PRESETS), default=None,
                        help='schedule and width (default: gpu with '
                        '--device N, else cpu): ' + presets)
    for key in sorted(PRESETS['cpu']):
        kind = int if key.endswith('iterations') or key == 'ext_images' \
            else float
        parser.add_argument('--' + key.replace('_', '-'), default=None,
                            type=kind, help='override the preset\'s %s' % key)
    parser.add_argument('--stand-in', default=STAND_IN,
                        help='the pretrained FCN8s the classifiers start from')


def preset_of(args):
    """``(name, cfg)``: the preset of ``args`` (gpu with a GPU --device)
    with the values the flags override."""
    gpu = str(args.device) not in ('-1', '@numpy')
    name = args.preset or ('gpu' if gpu else 'cpu')
    cfg = dict(PRESETS[name])
    cfg.update({k: getattr(args, k) for k in cfg
                if getattr(args, k) is not None})
    return name, cfg
