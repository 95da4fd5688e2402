#!/usr/bin/env python
"""Choose the GAIN settings of the CPU preset on the ``tune`` split.

For two seeds, the classifier stage of the preset, then GAIN over a grid
of L_am and L_seg weights and mask thresholds sigma, GAIN_ext over a grid
of L_ext weights (with the chosen GAIN setting's sigma), and the
fine-tuning control; every model is evaluated on ``tune`` only (the test
split is never read). The rule, fixed before the sweep: GAIN takes the
setting with the highest attention mIoU (each model at its best tau on
``tune``) averaged over the seeds, among those whose Mean IU stays within
1 point of the control's; GAIN_ext the L_ext weight with the highest
attention mIoU at sigma, under the same Mean IU condition. Writes
``--out/sweep.json`` and prints the table that models/pretrained/README.md
records.
"""
import argparse
import itertools
import json
import os
import sys

import numpy as np

from datasets import shapes
from metrics import report
from runtime.files import write_text
from runtime.jobs import HERE, Job, JobFailed, run_jobs
from training.presets import (PRESETS, STAND_IN, classifier_args,
                              gain_args)

GRID = dict(am_weight=(1.0, 2.0), seg_weight=(1.0, 2.0), sigma=(0.4, 0.5))
EXT_GRID = dict(ext_weight=(2.0, 5.0, 10.0))
#: Choices of this port measured against the chosen GAIN setting: the
#: flags that turn each into the alternative (docs/DEVIATIONS.md).
ALTERNATIVES = {'am_average=pair': ['--am-average', 'pair'],
                'head_dropout': ['--head-dropout']}
SEEDS = (0, 1)
KEYS = ('attention_miou', 'attention_miou_fixed', 'pointing_15px',
        'energy_box', 'map', 'mean_iu')
#: AP per class of the classifiers on tune (every class must learn).
AP = 'ap'
MEAN_IU_TOLERANCE = 0.01


def settings(grid):
    names = sorted(grid)
    return [dict(zip(names, values))
            for values in itertools.product(*(grid[n] for n in names))]


def label(setting):
    """``'am_weight=2,seg_weight=1,sigma=0.4'``: a run's name (and its
    ``evaluate.py --names``)."""
    return ','.join('%s=%g' % kv for kv in sorted(setting.items()))


def choose(rows, control, key):
    """The label of the row with the highest mean ``key`` whose Mean IU
    is within :data:`MEAN_IU_TOLERANCE` of the control's."""
    floor = np.mean(control['mean_iu']) - MEAN_IU_TOLERANCE
    fit = {name: np.mean(r[key]) for name, r in rows.items()
           if np.mean(r['mean_iu']) >= floor}
    return max(fit, key=fit.get) if fit else None


def main():
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--jobs', type=int, default=os.cpu_count() or 1,
                   help='runs at a time')
    p.add_argument('--out', default=os.path.join(HERE, 'runs', 'tune'),
                   help='directory of the runs')
    args = p.parse_args()
    cfg = PRESETS['cpu']
    data_dir = shapes.ensure()
    logs = os.path.join(args.out, 'logs')

    def job(name, script, a, **kw):
        return Job(name, script, os.path.join(args.out, name),
                   list(a) + ['--data-dir', data_dir],
                   os.path.join(logs, name + '.txt'), **kw)

    def gain_jobs(grid, variant, base):
        chosen_settings.update({label(s): s for s in settings(grid)})
        return {(label(s), seed): job(
            '%s_%s_seed%d' % (variant, label(s).replace(',', '_'), seed),
            'train_GAIN.py',
            gain_args(dict(base, **s), classifiers[seed].path, seed,
                      variant)) for s in settings(grid) for seed in SEEDS}

    def evaluate(runs, name, tau):
        evals = {}
        for seed in SEEDS:
            models = {n: j for (n, s), j in runs.items() if s == seed}
            evals[seed] = job('eval_%s_seed%d' % (name, seed), 'evaluate.py',
                              ['--split', 'tune', '--tau', tau,
                               '--modelfile'] + [j.path for j in
                                                 models.values()] +
                              ['--names'] + list(models),
                              product='metrics.json', restart=None)
        return evals

    def table(runs, evals):
        rows = {}
        for name in dict.fromkeys(n for n, _ in runs):
            metrics = []
            for seed in SEEDS:
                with open(evals[seed].path) as f:
                    metrics.append(json.load(f)['models'][name])
            rows[name] = {k: [m[k] for m in metrics] for k in KEYS + (AP,)}
        return rows

    chosen_settings = {}
    classifiers = {s: job('classifier_seed%d' % s, 'train_classifier.py',
                          classifier_args(cfg, STAND_IN, s)) for s in SEEDS}
    try:
        run_jobs(list(classifiers.values()), args.jobs, '-1')
        control = {('control', s): job(
            'control_seed%d' % s, 'train_GAIN.py',
            gain_args(cfg, classifiers[s].path, s, 'control'))
            for s in SEEDS}
        gains = {**control, **gain_jobs(GRID, 'gain', cfg)}
        run_jobs(list(gains.values()), args.jobs, '-1')
        reference = {**gains, **{('classifier', s): classifiers[s]
                                 for s in SEEDS}}
        evals = evaluate(reference, 'gain', cfg['sigma'])
        run_jobs(list(evals.values()), args.jobs, '-1')
        rows = table(reference, evals)
        classifier_row = rows.pop('classifier')
        control_row = rows.pop('control')
        best = choose(rows, control_row, 'attention_miou')
        chosen = dict(cfg, **chosen_settings.get(best, {}))
        exts = gain_jobs(EXT_GRID, 'gain_ext', chosen)
        run_jobs(list(exts.values()), args.jobs, '-1')
        ext_evals = evaluate(exts, 'gain_ext', chosen['sigma'])
        run_jobs(list(ext_evals.values()), args.jobs, '-1')
        ext_rows = table(exts, ext_evals)
        alternatives = {(name, seed): job(
            'gain_%s_seed%d' % (name, seed), 'train_GAIN.py',
            gain_args(chosen, classifiers[seed].path, seed) + flags)
            for name, flags in ALTERNATIVES.items() for seed in SEEDS}
        alternatives.update({(best, s): gains[best, s] for s in SEEDS})
        run_jobs(list(alternatives.values()), args.jobs, '-1')
        alt_evals = evaluate(alternatives, 'alternatives', cfg['sigma'])
        run_jobs(list(alt_evals.values()), args.jobs, '-1')
        alt_rows = table(alternatives, alt_evals)
    except JobFailed as e:
        sys.exit(str(e))
    best_ext = choose(ext_rows, control_row, 'attention_miou_fixed')
    result = dict(seeds=list(SEEDS), preset=cfg, chosen=chosen,
                  classifier=classifier_row, control=control_row,
                  gain=rows, gain_ext=ext_rows, alternatives=alt_rows,
                  chosen_gain=best,
                  chosen_gain_ext=best_ext, rule=__doc__.split('The rule')[1]
                  .split('Writes')[0].strip())
    write_text(os.path.join(args.out, 'sweep.json'),
               json.dumps(result, indent=1, sort_keys=True))
    lines = [report.markdown_table(
        [('classifier', classifier_row),
         ('control (--am-weight 0)', control_row)] +
        [('GAIN ' + n + (' (chosen)' if n == best else ''), r)
         for n, r in rows.items()] +
        [('GAIN_ext ' + n + (' (chosen)' if n == best_ext else ''), r)
         for n, r in ext_rows.items()] +
        [('GAIN (chosen) ' + n, r) for n, r in alt_rows.items()
         if n != best], KEYS, digits=1,
        first='run (tune split, mean ± sd over seeds %s)'
        % ' and '.join(map(str, SEEDS)))]
    print('\n'.join(lines))
    print('Attention mIoU @sigma: at %g for control and GAIN, at the chosen '
          '%g for GAIN_ext' % (cfg['sigma'], chosen['sigma']))
    print('chosen: GAIN %s; GAIN_ext %s' % (best, best_ext))
    print('classifier AP per class on tune (%s): %s' % (
        ', '.join(shapes.CLASS_NAMES[1:]), ', '.join(
            '%.1f' % (100 * np.mean(a)) for a in
            zip(*classifier_row[AP]))))


if __name__ == '__main__':
    main()
