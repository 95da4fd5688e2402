#!/usr/bin/env python
"""What GAIN changes, measured: every row of the ``shapes`` pipeline over
several seeds, each difference against its control with a paired
bootstrap interval over the test images and the spread over the seeds.

Rows, per seed ``s`` (all from the shipped stand-in FCN8s):

* ``classifier``: a fresh GAIN head on the frozen trunk
  (``train_classifier.py --seed s``);
* ``control``: the GAIN schedule from that classifier with ``--am-weight
  0``: the trunk fine-tuned on L_cl and L_seg only;
* ``gain``: the same schedule with L_am;
* ``gain_ext``: GAIN plus L_ext on ``ext_images`` pixel-supervised images;
* ``gain_no_seg``: GAIN without L_seg (the paper's loss, L_cl + L_am).

Every model is evaluated on ``tune`` (where each model's attention
threshold tau is chosen), on ``test`` (read once, for the reported
numbers) and on ``val`` (in-distribution mAP). The settings themselves
(``pipeline.presets``) were chosen on ``tune``. Differences: ``control -
classifier`` (fine-tuning alone), ``gain - control`` (what L_am adds),
``gain_ext - gain`` (what pixel supervision adds), ``gain - gain_no_seg``
(what L_seg adds); each in percentage points with the 95 % percentile
interval of its mean over the seeds over 1000 paired resamples of the
test images, every seed's own interval, and the seeds' standard deviation
(ddof 1). A difference is "shown" when all those intervals lie on one
side of 0.

Writes ``media/experiment.json``, ``media/EXPERIMENT.md`` and the pictures
``media/experiment_differences.png`` and ``media/experiment_tau.png``;
the runs go to ``--out`` (a rerun reuses every job whose command and
inputs are unchanged).
"""
import os
import sys

import numpy as np

import visualizations
from datasets import shapes
from metrics import bootstrap, report
from metrics.records import load_records
from pipeline import orchestrator
from pipeline.jobs import HERE
from pipeline.presets import (VARIANTS, add_preset_flags, classifier_args,
                              gain_args, preset_of)

ROWS = ('classifier', 'control', 'gain', 'gain_ext', 'gain_no_seg')
SPLITS = ('tune', 'test', 'val')
#: The metrics of each row (test split unless named otherwise).
ROW_KEYS = ('mean_iu', 'map', 'map_val', 'attention_miou_tuned',
            'attention_miou_sigma', 'pointing_15px', 'energy_box', 'energy',
            'pointing', 'zero_cams', 'cue_gap_absent', 'cue_gap_present',
            'cue_auc_absent', 'positive_rate_present')
#: ``(b, a, keys)``: the differences b - a reported.
COMPARISONS = (
    ('control', 'classifier', ('map', 'map_val', 'mean_iu',
                               'attention_miou_tuned', 'pointing_15px',
                               'cue_auc_absent')),
    ('gain', 'control', ('attention_miou_tuned', 'pointing_15px',
                         'energy_box', 'attention_miou_sigma', 'map',
                         'map_val', 'mean_iu', 'cue_auc_absent',
                         'cue_gap_absent', 'cue_gap_present',
                         'positive_rate_present')),
    ('gain_ext', 'gain', ('attention_miou_sigma', 'attention_miou_tuned',
                          'pointing_15px', 'energy_box', 'map', 'mean_iu')),
    ('gain', 'gain_no_seg', ('mean_iu', 'map', 'attention_miou_tuned',
                             'pointing_15px')),
)
#: The goals the experiment checks: ``(b, a, key, at least)``; met when the
#: mean difference reaches the bound and every seed's interval and the
#: interval of the mean exclude 0.
GOALS = (('gain', 'control', 'attention_miou_tuned', 5.0),
         ('gain', 'control', 'pointing_15px', 5.0),
         ('gain_ext', 'gain', 'attention_miou_sigma', 3.0))


def metric(key):
    """``(split, f(records, index))`` of a row key."""
    if key == 'map_val':
        return 'val', bootstrap.mean_ap
    if key == 'attention_miou_sigma':
        return 'test', bootstrap.attention('attention_miou_fixed')
    return 'test', bootstrap.metric(key)


def jobs_of(run, cfg, stand_in, seeds):
    """``(classifiers, gains, evaluations)``: the jobs of every seed;
    ``run``: the :class:`pipeline.orchestrator.Pipeline`."""
    def job(title, script, name, args):
        return run.job(name, script, list(args) + [
            '--dataset', 'shapes', '--data-dir', run.data_dir], title)

    classifiers = {s: job('classifier seed %d' % s, 'train_classifier.py',
                          'classifier_seed%d' % s,
                          classifier_args(cfg, stand_in, s)) for s in seeds}
    gains = {(v, s): job('%s seed %d' % (v, s), 'train_GAIN.py',
                         '%s_seed%d' % (v, s),
                         gain_args(cfg, classifiers[s].path, s, v))
             for s in seeds for v in VARIANTS}
    evaluations = {}
    for split in SPLITS:
        for s in seeds:
            extra = ['--no-attention'] if split == 'val' else [
                '--tau', cfg['sigma']]
            if split == 'test':
                extra += ['--tau-from', evaluations['tune', s].path]
            evaluations[split, s] = run.evaluation(
                'eval/%s_seed%d' % (split, s), split, dict(zip(ROWS, [
                    classifiers[s]] + [gains[v, s] for v in ROWS[1:]])),
                *extra, title='evaluate %s seed %d' % (split, s))
    return classifiers, gains, evaluations


def load(evaluations):
    """``{(split, seed): ({row: metrics}, {row: records})}``."""
    return {key: (job.read()['models'], load_records(
        os.path.join(job.out, 'per_image.npz'))[0])
        for key, job in evaluations.items()}


def row_summaries(results, seeds):
    """``{row: {key: [value per seed]}, ...}`` plus each row's tau curves
    and AP per class (test split)."""
    rows = {}
    for row in ROWS:
        r = {}
        for key in ROW_KEYS:
            split, f = metric(key)
            r[key] = [f(results[split, s][1][row]) for s in seeds]
        for split in ('tune', 'test'):
            r['tau_curve_' + split] = [
                results[split, s][0][row]['attention_curve']['miou']
                for s in seeds]
        r['tuned_tau'] = [results['test', s][0][row]['attention_tuned_tau']
                          for s in seeds]
        r['ap_class'] = [results['test', s][0][row]['ap'] for s in seeds]
        rows[row] = r
    return rows


def differences(results, seeds, n_resamples):
    """:func:`metrics.bootstrap.differences` of :data:`COMPARISONS`, each
    metric on its split."""
    def pairs(a, b, key):
        split = metric(key)[0]
        return [(results[split, s][1][a], results[split, s][1][b])
                for s in seeds]
    return bootstrap.differences(COMPARISONS, pairs, n_resamples,
                                 lambda key: metric(key)[1])


def goals(diffs):
    """``[dict(goal, difference, met)]`` of :data:`GOALS`."""
    out = []
    for b, a, key, bound in GOALS:
        d = diffs['%s - %s' % (b, a)][key]
        met = (d['shown'] and d['mean'] >= bound and
               min(d['per_seed']) >= bound)
        out.append(dict(goal='%s - %s: %s >= +%g on every seed, interval '
                        'excluding 0' % (b, a, report.title(key), bound),
                        mean=d['mean'], ci95=d['ci95'],
                        per_seed=d['per_seed'], met=met))
    return out


def write_media(run, media, result):
    """The pictures, experiment.json and EXPERIMENT.md."""
    orchestrator.new_dir(media)
    rows = list(result['rows'].items())
    taus = visualizations.tau_curves_figure(
        {name: (np.mean(r['tau_curve_tune'], 0), np.mean(r['tau_curve_test'],
                                                         0))
         for name, r in rows}, result['taus'], result['config']['sigma'])
    visualizations.save_figure(taus, os.path.join(media,
                                                  'experiment_tau.png'),
                               dpi=100)
    visualizations.save_figure(
        visualizations.differences_figure(result['differences'], report.title),
        os.path.join(media, 'experiment_differences.png'), dpi=100)
    goal_lines = '\n'.join(
        '- %s: %s (mean %+.1f, interval [%+.1f, %+.1f], seeds %s)'
        % (g['goal'], 'met' if g['met'] else 'NOT met', g['mean'],
           g['ci95'][0], g['ci95'][1],
           ' '.join('%+.1f' % v for v in g['per_seed']))
        for g in result['goals'])
    text = EXPERIMENT % dict(
        command=result['command'], wall=result['wall_s'] / 60.,
        seeds=' '.join(map(str, result['seeds'])),
        rows=report.markdown_table(rows, ROW_KEYS, digits=1,
                                   tau=result['config']['sigma']),
        differences=report.difference_table(result['differences']),
        goals=goal_lines, ap=ap_table(rows, result['class_names']),
        sigma=result['config']['sigma'],
        resamples=result['resamples'], images=result['test_images'])
    run.publish(media, {'experiment.json': result, 'EXPERIMENT.md': text},
                'experiment')


def ap_table(rows, class_names):
    lines = ['| model | ' + ' | '.join(class_names) + ' |',
             '|---' * (len(class_names) + 1) + '|']
    for name, r in rows:
        aps = np.array(r['ap_class'], dtype=float) * 100
        lines.append('| %s | %s |' % (name, ' | '.join(
            '%.1f ± %.1f' % (m, s) for m, s in zip(aps.mean(0),
                                                   aps.std(0, ddof=1)))))
    return '\n'.join(lines)


EXPERIMENT = """# What GAIN changes on the embedded dataset, with intervals

`%(command)s`: %(wall).0f minutes of wall time. Seeds %(seeds)s; every
row starts from the shipped stand-in FCN8s; settings chosen on the
`tune` split (models/pretrained/README.md), numbers on the unbiased
`test` split (read once for these numbers), `val` for the in-distribution
mAP. Percentages, mean ± standard deviation over the seeds (ddof 1);
`@%(sigma)g` is the threshold sigma GAIN trains its mask with; the tuned
tau of each model is its best threshold on `tune`.

%(rows)s

## Differences (percentage points; AUC in hundredths)

Mean over the seeds, the 95 %% percentile interval of that mean over
%(resamples)d paired resamples of the %(images)d test images, the seeds'
standard deviation and each seed's difference. "shown": the interval of
the mean and every seed's own interval exclude 0.

%(differences)s

![differences with their intervals](experiment_differences.png)

## Goals

%(goals)s

## Attention mIoU against tau

Mean curve over the seeds, on `tune` (dashed, where each model's tau is
chosen) and on `test` (solid).

![attention mIoU against tau](experiment_tau.png)

## AP per class (test)

%(ap)s
"""


def main():
    p = orchestrator.parser(__doc__, 'experiment', seeds=[0, 1, 2, 3, 4],
                            resamples=True)
    add_preset_flags(p)
    args = orchestrator.parse(p)
    if len(args.seeds) < 2:
        p.error('--seeds: at least two distinct seeds (a spread needs two)')
    args.preset = args.preset or 'cpu'   # the shipped stand-in's, also on a GPU
    preset, cfg = preset_of(args)
    run = orchestrator.Pipeline(args)
    classifiers, gains, evaluations = jobs_of(run, cfg, args.stand_in,
                                              args.seeds)
    run.run(classifiers)
    # the cheap runs without L_seg last, to fill the final slots
    run.run(sorted(gains.values(), key=lambda j: 'no_seg' in j.title))
    for split in SPLITS:
        run.run([j for (sp, _), j in evaluations.items() if sp == split])
    results = load(evaluations)
    taus = results['tune', args.seeds[0]][0]['classifier'][
        'attention_curve']['tau']
    diffs = differences(results, args.seeds, args.resamples)
    test_images = bootstrap.n_images(
        results['test', args.seeds[0]][1]['classifier'])
    result = dict(
        wall_s=run.seconds(), seeds=args.seeds,
        command=' '.join(['experiment.py'] + sys.argv[1:]), preset=preset,
        config=cfg, stand_in=os.path.relpath(args.stand_in, HERE),
        resamples=args.resamples, test_images=test_images, taus=taus,
        data_dir=run.data_dir, class_names=list(shapes.CLASS_NAMES[1:]),
        rows=row_summaries(results, args.seeds), differences=diffs)
    result['goals'] = goals(diffs)
    write_media(run, args.media, result)


if __name__ == '__main__':
    orchestrator.main(main)
