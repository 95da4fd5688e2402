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
import itertools

import numpy as np

from datasets import shapes
from metrics import report
from pipeline import orchestrator
from pipeline.presets import PRESETS, STAND_IN, classifier_args, gain_args

GRID = dict(am_weight=(1.0, 2.0), seg_weight=(1.0, 2.0), sigma=(0.4, 0.5))
EXT_GRID = dict(ext_weight=(2.0, 5.0, 10.0))
#: Choices of this port measured against the chosen GAIN setting: the
#: flags that turn each into the alternative (docs/DEVIATIONS.md).
ALTERNATIVES = {'am_average=pair': ['--am-average', 'pair'],
                'head_dropout': ['--head-dropout']}
SEEDS = (0, 1)
KEYS = ('attention_miou', 'attention_miou_fixed', 'pointing_scaled',
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


class Sweep(orchestrator.Pipeline):
    """The jobs of the sweep and the settings of their labels."""

    def __init__(self, args):
        super().__init__(args)
        self.settings = {}
        self.classifiers = self.run({s: self.trained(
            'classifier_seed%d' % s, 'train_classifier.py',
            classifier_args(PRESETS['cpu'], STAND_IN, s)) for s in SEEDS})

    def trained(self, name, script, args):
        return self.job(name, script, list(args) + ['--data-dir',
                                                    self.data_dir])

    def gain(self, name, cfg, seed, variant='gain', extra=()):
        return self.trained('%s_seed%d' % (name, seed), 'train_GAIN.py',
                            gain_args(cfg, self.classifiers[seed].path, seed,
                                      variant) + list(extra))

    def gains(self, grid, variant, base):
        """``{(label, seed): GAIN job}`` of every setting of ``grid`` over
        ``base`` (not run)."""
        self.settings.update({label(s): s for s in settings(grid)})
        return {(label(s), seed): self.gain(
            '%s_%s' % (variant, label(s).replace(',', '_')),
            dict(base, **s), seed, variant)
            for s in settings(grid) for seed in SEEDS}

    def table(self, runs, name, tau):
        """``{label: {key: [value per seed]}}`` of ``runs`` on ``tune``,
        one evaluation per seed."""
        metrics = [j.read()['models'] for j in self.run([
            self.evaluation('eval_%s_seed%d' % (name, seed), 'tune', {
                n: j for (n, s), j in runs.items() if s == seed}, '--tau', tau)
            for seed in SEEDS])]
        return {name: {k: [m[name][k] for m in metrics] for k in KEYS + (AP,)}
                for name in dict.fromkeys(n for n, _ in runs)}


def sweep(jobs):
    """The sweep's result (``sweep.json``) of a :class:`Sweep`."""
    cfg = PRESETS['cpu']
    control = {('control', s): jobs.gain('control', cfg, s, 'control')
               for s in SEEDS}
    gains = jobs.run({**control, **jobs.gains(GRID, 'gain', cfg)})
    rows = jobs.table({**gains, **{('classifier', s): jobs.classifiers[s]
                                   for s in SEEDS}}, 'gain', cfg['sigma'])
    classifier_row, control_row = rows.pop('classifier'), rows.pop('control')
    best = choose(rows, control_row, 'attention_miou')
    chosen = dict(cfg, **jobs.settings.get(best, {}))
    ext_rows = jobs.table(jobs.run(jobs.gains(EXT_GRID, 'gain_ext', chosen)),
                          'gain_ext', chosen['sigma'])
    alternatives = {(name, s): jobs.gain('gain_' + name, chosen, s,
                                         extra=extra)
                    for name, extra in ALTERNATIVES.items() for s in SEEDS}
    alternatives.update({(best, s): gains[best, s] for s in SEEDS})
    alt_rows = jobs.table(jobs.run(alternatives), 'alternatives',
                          cfg['sigma'])
    return dict(seeds=list(SEEDS), preset=cfg, chosen=chosen,
                classifier=classifier_row, control=control_row, gain=rows,
                gain_ext=ext_rows, alternatives=alt_rows, chosen_gain=best,
                chosen_gain_ext=choose(ext_rows, control_row,
                                       'attention_miou_fixed'),
                rule=__doc__.split('The rule')[1].split('Writes')[0].strip())


def main():
    args = orchestrator.parse(orchestrator.parser(__doc__, 'tune',
                                                  media=False))
    jobs = Sweep(args)
    result = sweep(jobs)
    jobs.publish(args.out, {'sweep.json': result})
    best, best_ext = result['chosen_gain'], result['chosen_gain_ext']
    print(report.markdown_table(
        [('classifier', result['classifier']),
         ('control (--am-weight 0)', result['control'])] +
        [('GAIN ' + n + (' (chosen)' if n == best else ''), r)
         for n, r in result['gain'].items()] +
        [('GAIN_ext ' + n + (' (chosen)' if n == best_ext else ''), r)
         for n, r in result['gain_ext'].items()] +
        [('GAIN (chosen) ' + n, r) for n, r in result['alternatives'].items()
         if n != best], KEYS, digits=1,
        first='run (tune split, mean ± sd over seeds %s)'
        % ' and '.join(map(str, SEEDS))))
    print('Attention mIoU @sigma: at %g for control and GAIN, at the chosen '
          '%g for GAIN_ext' % (result['preset']['sigma'],
                               result['chosen']['sigma']))
    print('chosen: GAIN %s; GAIN_ext %s' % (best, best_ext))
    print('classifier AP per class on tune (%s): %s' % (
        ', '.join(shapes.CLASS_NAMES[1:]), ', '.join(
            '%.1f' % (100 * np.mean(a)) for a in
            zip(*result['classifier'][AP]))))


if __name__ == '__main__':
    orchestrator.main(main)
