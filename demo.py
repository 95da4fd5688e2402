#!/usr/bin/env python
"""The whole pipeline on the embedded ``shapes`` dataset, in minutes.

0. the stand-in for the pretrained FCN8s (``train_fcn.py --cls-weight
   1``, then as many updates again from its model): the CPU preset takes
   the shipped ``models/pretrained/fcn8s_shapes_v3.npz`` unless
   ``--retrain-fcn``;
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
differences RESULTS.md quotes. A job is reused when its command and
everything it reads are unchanged (``pipeline/``).
"""
import os
import sys

from datasets import shapes
from metrics import bootstrap, report
from metrics.records import load_records
from models.precision import PRECISIONS
from pipeline import orchestrator
from pipeline.jobs import HERE, json_or_none
from pipeline.presets import (PRESETS, add_preset_flags, classifier_args,
                              fcn_args, gain_args, preset_of)
from runtime.files import open_input

KEYS = ['mean_iu', 'map', 'attention_miou_tuned', 'attention_miou_fixed',
        'pointing_scaled', 'pointing_15px', 'energy_box', 'zero_cams',
        'cue_gap_absent', 'cue_auc_absent']
#: The per-class metrics of each model (test split).
CLASS_KEYS = ('ap', 'iou', 'attention_iou_tuned', 'pointing_scaled',
              'pointing_scaled_chance')
#: The differences the demo measures on its own runs: (b, a, keys).
COMPARISONS = (('control', 'classifier', ('attention_miou_tuned',
                                          'pointing_scaled', 'map',
                                          'mean_iu')),
               ('gain', 'control', ('attention_miou_tuned',
                                    'pointing_scaled', 'map', 'mean_iu')),
               ('gain_ext', 'gain', ('attention_miou_fixed',
                                     'attention_miou_tuned', 'mean_iu')))
#: The GAIN runs of each seed, and their titles in the tables.
VARIANTS = (('control', 'control (no L_am)'), ('gain', 'GAIN'),
            ('gain_ext', 'GAIN_ext'))


def pipeline(run, args, cfg, shipped):
    """``(stages, {name: model job}, {'tune', 'test', 'visualize' and
    'fcn' unless shipped: job})`` of the ``run`` (a ``Pipeline``)."""
    data = ['--dataset', 'shapes', '--data-dir', run.data_dir]
    precision = ['--dtype', args.dtype] if args.dtype != 'float32' else []

    def job(title, script, name, a):
        return run.job(name, script, list(a) + data, title)

    stages, stand_in, others = [], args.stand_in, {}
    if not shipped:   # the shipped stand-in's recipe: two runs, see above
        first = job('0/3 stand-in FCN8s', 'train_fcn.py', 'fcn',
                    fcn_args(cfg) + precision)
        others['fcn'] = job('0/3 stand-in FCN8s, continued', 'train_fcn.py',
                            'fcn_continued', ['--modelfile', first.path] +
                            fcn_args(cfg) + precision)
        stages += [[first], [others['fcn']]]
        stand_in = others['fcn'].path
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
    for split in ('tune', 'test'):
        extra = ['--tau-from', others['tune'].path] if split == 'test' else []
        others[split] = run.evaluation(
            'eval_' + split, split, models, '--tau', cfg['sigma'], *extra,
            title='3/3 evaluate on %s' % split)
        stages.append([others[split]])
    others['visualize'] = job(
        '3/3 visualize', 'visualize.py', 'visualize',
        ['--pretrained', models['classifier'].path, '--trained',
         models['gain_seed%d' % args.seeds[0]].path, '--split', 'test',
         '--num', 6])
    stages.append([others['visualize']])
    return stages, models, others


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


def pictures(args, cfg, models, others):
    """``{name in --media: bytes}``: the pictures of the runs."""
    first, ext = (models['%s_seed%d' % (v, args.seeds[0])].out
                  for v in ('gain', 'gain_ext'))
    paths = {'attention_before_after.png': others['visualize'].path,
             'attention_miou_vs_tau.png': os.path.join(
                 others['test'].out, 'attention_miou.png'),
             'loss_classifier.png': os.path.join(models['classifier'].out,
                                                 'loss.png'),
             'loss_gain.png': os.path.join(first, 'loss.png'),
             'attention_val_gain.png': os.path.join(first,
                                                    'attention_val.png'),
             'loss_gain_ext.png': os.path.join(ext, 'loss.png'),
             'attention_during_gain.png': os.path.join(
                 first, 'attention', 'iter_%06d.png' % cfg['gain_iterations'])}
    if 'fcn' in others:
        paths['loss_fcn.png'] = os.path.join(others['fcn'].out, 'loss.png')
    found = {}
    for name, path in paths.items():
        with open_input(path, 'image') as f:
            found[name] = f.read()
    return found


def main():
    p = orchestrator.parser(__doc__, 'demo', seeds=[0])
    add_preset_flags(p)
    p.add_argument('--retrain-fcn', action='store_true',
                   help='train the stand-in FCN8s, not the shipped one')
    p.add_argument('--dtype', default='float32', choices=PRECISIONS,
                   help='--dtype of the training steps')
    args = orchestrator.parse(p)
    preset, cfg = preset_of(args)
    shipped = not args.retrain_fcn and all(
        cfg[k] == PRESETS['cpu'][k] for k in ('width', 'fcn_iterations',
                                              'fcn_lr'))
    run = orchestrator.Pipeline(args)
    stages, models, others = pipeline(run, args, cfg, shipped)
    for stage in stages:
        run.run(stage)
    metrics = others['test'].read()['models']
    for m in metrics.values():   # results.json names no path of this machine
        m['modelfile'] = os.path.relpath(m['modelfile'], HERE)
    records, _ = load_records(os.path.join(others['test'].out,
                                           'per_image.npz'))
    results = dict(
        command=' '.join(['demo.py'] + sys.argv[1:]), preset=preset,
        config=cfg, seeds=args.seeds, **run.timing(),
        models={n: {k: v for k, v in m.items()
                    if not isinstance(v, (list, dict))}
                for n, m in metrics.items()},
        rows=rows_of(metrics, args.seeds),
        differences=differences(records, args.seeds),
        pointing_scaled_px=metrics['classifier']['pointing_scaled_px'],
        per_class={n: bootstrap.per_class(CLASS_KEYS, [records[n]],
                                          shapes.CLASS_NAMES)
                   for n in records})
    page = report.results_page(results, KEYS, json_or_none(os.path.join(
        args.media, 'experiment.json')))
    run.publish(args.media, dict(pictures(args, cfg, models, others), **{
        'results.json': results, 'RESULTS.md': page}), 'demo')


if __name__ == '__main__':
    orchestrator.main(main)
