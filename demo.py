#!/usr/bin/env python
"""The whole pipeline on the embedded ``shapes`` dataset, in minutes.

0. the stand-in for the pretrained FCN8s (``train_fcn.py --cls-weight
   1``): the CPU preset takes the shipped
   ``models/pretrained/fcn8s_shapes_v2.npz`` unless ``--retrain-fcn``;
1. ``train_classifier.py``: a fresh GAIN head on the frozen trunk;
2. ``train_GAIN.py``: for each of ``--seeds``, GAIN, GAIN_ext and the
   fine-tuning control (the same schedule without L_am), as ``--jobs``
   parallel processes of one thread each (the same numbers whatever
   ``--jobs``);
3. ``evaluate.py`` on the ``tune`` split (where each model's attention
   threshold is chosen), then on the unbiased ``test`` split;
   ``visualize.py``.

Writes ``media/results.json``, ``media/RESULTS.md`` (the numbers with
paired bootstrap intervals over the test images) and the pictures. What
the demo shows is one run; what holds over seeds and against the
fine-tuning control is measured by ``experiment.py``, whose established
differences RESULTS.md quotes. A step whose output exists in ``--out``
from the same command line is reused.
"""
import argparse
import json
import os
import shutil
import sys
import time

from datasets import shapes
from metrics import bootstrap, report
from models.precision import PRECISIONS
from runtime import flags
from metrics.records import load_records
from runtime.files import write_text
from runtime.jobs import HERE, Job, JobFailed, run_jobs
from training.presets import (PRESETS, add_preset_flags, classifier_args,
                              fcn_args, gain_args, preset_of)

KEYS = ['mean_iu', 'map', 'attention_miou_tuned', 'attention_miou_fixed',
        'pointing_15px', 'energy_box', 'zero_cams', 'cue_gap_absent',
        'cue_auc_absent']
#: The differences the demo measures on its own runs: (b, a, keys).
COMPARISONS = (('control', 'classifier', ('attention_miou_tuned',
                                          'pointing_15px', 'map',
                                          'mean_iu')),
               ('gain', 'control', ('attention_miou_tuned', 'pointing_15px',
                                    'map', 'mean_iu')),
               ('gain_ext', 'gain', ('attention_miou_fixed',
                                     'attention_miou_tuned', 'mean_iu')))
#: The GAIN runs of each seed, and their titles in the tables.
VARIANTS = (('control', 'control (no L_am)'), ('gain', 'GAIN'),
            ('gain_ext', 'GAIN_ext'))


def pipeline(args, cfg, shipped, data_dir):
    """``(jobs in order, {name: model job}, visualize job)``."""
    out, logs = args.out, os.path.join(args.out, 'logs')
    common = ['--device', args.device, '--dataset', 'shapes', '--data-dir',
              data_dir]
    precision = ['--dtype', args.dtype] if args.dtype != 'float32' else []

    def job(title, script, name, a, **kw):
        return Job(title, script, os.path.join(out, name),
                   list(a) + common, os.path.join(logs, name + '.txt'), **kw)

    stages = []
    stand_in = args.stand_in
    if not shipped:
        fcn = job('0/3 stand-in FCN8s', 'train_fcn.py', 'fcn',
                  fcn_args(cfg) + precision)
        stages.append([fcn])
        stand_in = fcn.path
    models = {'classifier': job('1/3 classifier', 'train_classifier.py',
                                'classifier',
                                classifier_args(cfg, stand_in, 0) +
                                precision)}
    for s in args.seeds:
        for v, _ in VARIANTS:
            models['%s_seed%d' % (v, s)] = job(
                '2/3 %s seed %d' % (v, s), 'train_GAIN.py', '%s_seed%d'
                % (v, s), gain_args(cfg, models['classifier'].path, s, v) +
                precision)
    stages += [[models['classifier']], list(models.values())[1:]]
    names = list(models)
    paths = [m.path for m in models.values()]
    evaluations = {}
    for split in ('tune', 'test'):
        a = ['--split', split, '--tau', cfg['sigma'], '--modelfile'] + \
            paths + ['--names'] + names
        if split == 'test':
            a += ['--tau-from', evaluations['tune'].path]
        evaluations[split] = job('3/3 evaluate on %s' % split,
                                 'evaluate.py', 'eval_' + split, a,
                                 product='metrics.json', restart=None)
        stages.append([evaluations[split]])
    visualize = job('3/3 visualize', 'visualize.py', 'visualize',
                    ['--pretrained', models['classifier'].path, '--trained',
                     models['gain_seed%d' % args.seeds[0]].path,
                     '--split', 'test', '--num', 6], product='overview.png',
                    restart=None)
    stages.append([visualize])
    return stages, models, evaluations, visualize


def rows_of(models, seeds):
    """``[(title, {key: value or [per seed]})]`` of the test metrics."""
    rows = [('FCN8s + classifier (before GAIN)', models['classifier'])]
    for v, title in VARIANTS:
        runs = [models['%s_seed%d' % (v, s)] for s in seeds]
        rows.append(('%s (%d seed%s)' % (title, len(seeds),
                                         's' if len(seeds) > 1 else ''),
                     {k: [r.get(k) for r in runs] for k in KEYS}))
    return rows


def differences(records, seeds):
    """The demo's own paired differences (percentage points)."""
    def pairs(a, b, key):
        return [(records[a if a == 'classifier' else '%s_seed%d' % (a, s)],
                 records['%s_seed%d' % (b, s)]) for s in seeds]
    return bootstrap.differences(COMPARISONS, pairs)


def established(media):
    """The experiment's differences (media/experiment.json), or None."""
    try:
        with open(os.path.join(media, 'experiment.json')) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_media(media, results, pictures):
    os.makedirs(media, exist_ok=True)
    write_text(os.path.join(media, 'results.json'),
               json.dumps(results, indent=1, sort_keys=True))
    for name, src in pictures.items():
        shutil.copyfile(src, os.path.join(media, name))
    text = report.results_page(results, KEYS, established(media))
    write_text(os.path.join(media, 'RESULTS.md'), text)
    return text


def main():
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='-1',
                   help='-1 for the CPU, N for GPU N (default preset: gpu)')
    add_preset_flags(p)
    p.add_argument('--seeds', type=flags.seed, nargs='+', default=[0],
                   help='seeds of the GAIN and GAIN_ext runs')
    p.add_argument('--jobs', type=int, default=os.cpu_count() or 1,
                   help='runs at a time (CPU; 1 on a GPU)')
    p.add_argument('--retrain-fcn', action='store_true',
                   help='train the stand-in FCN8s instead of taking the '
                   'shipped one')
    p.add_argument('--dtype', default='float32', choices=PRECISIONS,
                   help='--dtype of the training steps (see '
                   'train_GAIN.py --help)')
    p.add_argument('--data-dir', default=None,
                   help='a shapes dataset (default: the generated one)')
    p.add_argument('--out', default=os.path.join(HERE, 'runs', 'demo'),
                   help='directory of the runs')
    p.add_argument('--media', default=os.path.join(HERE, 'media'),
                   help='where results and pictures go')
    args = p.parse_args()
    preset, cfg = preset_of(args)
    gpu = str(args.device) not in ('-1', '@numpy')
    start = time.time()
    data_dir = args.data_dir or shapes.ensure()
    print('== dataset: %s' % data_dir, flush=True)
    shipped = not args.retrain_fcn and all(
        cfg[k] == PRESETS['cpu'][k] for k in ('width', 'fcn_iterations',
                                              'fcn_lr'))
    stages, models, evaluations, visualize = pipeline(args, cfg, shipped,
                                                      data_dir)
    try:
        for stage in stages:
            run_jobs(stage, 1 if gpu else max(1, args.jobs), args.device)
    except JobFailed as e:
        sys.exit(str(e))

    with open(evaluations['test'].path) as f:
        metrics = json.load(f)['models']
    for m in metrics.values():   # results.json names no path of this machine
        m['modelfile'] = os.path.relpath(m['modelfile'], HERE)
    records, _ = load_records(os.path.join(evaluations['test'].out,
                                           'per_image.npz'))
    first = models['gain_seed%d' % args.seeds[0]].out
    pictures = {
        'attention_before_after.png': visualize.path,
        'attention_miou_vs_tau.png': os.path.join(evaluations['test'].out,
                                                  'attention_miou.png'),
        'loss_classifier.png': os.path.join(models['classifier'].out,
                                            'loss.png'),
        'loss_gain.png': os.path.join(first, 'loss.png'),
        'attention_val_gain.png': os.path.join(first, 'attention_val.png'),
        'loss_gain_ext.png': os.path.join(
            models['gain_ext_seed%d' % args.seeds[0]].out, 'loss.png'),
        'attention_during_gain.png': os.path.join(
            first, 'attention', 'iter_%06d.png' % cfg['gain_iterations'])}
    if not shipped:
        pictures['loss_fcn.png'] = os.path.join(args.out, 'fcn', 'loss.png')
    results = dict(
        command=' '.join(['demo.py'] + sys.argv[1:]), preset=preset,
        config=cfg, seeds=args.seeds, seconds=round(time.time() - start),
        models={n: {k: v for k, v in m.items()
                    if not isinstance(v, (list, dict))}
                for n, m in metrics.items()},
        rows=rows_of(metrics, args.seeds),
        differences=differences(records, args.seeds))
    text = write_media(args.media, results, pictures)
    print(text)
    print('== demo finished in %.0f s; see %s'
          % (results['seconds'], os.path.join(args.media, 'RESULTS.md')))


if __name__ == '__main__':
    main()
