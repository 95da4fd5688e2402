#!/usr/bin/env python
"""The whole pipeline on the embedded ``shapes`` dataset, on a CPU.

train_fcn (thin FCN8s from scratch) -> train_classifier -> train_GAIN
(self-guided) and train_GAIN with GAIN_ext on a few pixel-supervised images,
for each ``--seeds`` -> evaluate everything on the unbiased ``test`` split ->
visualize. Writes ``media/RESULTS.md`` and the pictures in ``media/``.
A step whose model already exists in ``--out`` is reused.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import chainer
import numpy as np

from datasets import get_dataset, preprocess, shapes
from models import load_model

HERE = os.path.dirname(os.path.abspath(__file__))


def step(title, script, out, *args):
    """Run ``script`` unless ``out/model.npz`` exists; progress is shown."""
    if os.path.exists(os.path.join(out, 'model.npz')):
        print('== %s: reusing %s' % (title, out), flush=True)
        return
    print('== %s' % title, flush=True)
    start = time.time()
    subprocess.run([sys.executable, os.path.join(HERE, script),
                    '--out', out] + [str(a) for a in args], check=True)
    print('== %s done in %.0f s' % (title, time.time() - start), flush=True)


def cue_reliance(model, split='test'):
    """How much a classifier's decisions follow the context cues.

    Over (image, class c) pairs where c is absent: the share scored
    positive (logit > 0) when c's cue is in the image minus the share when
    it is not. A classifier that ignores the cues scores ~0.
    """
    data = get_dataset('shapes', None, split)
    with open(os.path.join(data.data_dir, 'meta.json')) as f:
        meta = json.load(f)
    names = meta['class_names'][1:]
    entries = [meta['images'][i] for i in data.ids]
    present = np.array([[n in e['classes'] for n in names] for e in entries])
    cue = np.array([[meta['cue_of_class'][n] in e['cues'] for n in names]
                    for e in entries])
    x = np.stack([preprocess(data[i][0]) for i in range(len(data))])
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        positive = np.concatenate([model.classify(x[i:i + 50]).array > 0
                                   for i in range(0, len(x), 50)])
    absent = ~present
    return float(positive[absent & cue].mean() -
                 positive[absent & ~cue].mean())


GAIN_COLUMNS = ['mean_iu', 'map', 'attention_miou', 'attention_miou_fixed',
                'energy', 'pointing', 'cue_reliance']
TITLES = dict(accuracy='Accuracy', accuracy_class='Accuracy Class',
              mean_iu='Mean IU', fwavacc='FWAVACC', map='mAP',
              attention_miou='Attention mIoU (best tau)',
              attention_miou_fixed='Attention mIoU (tau 0.5)',
              energy='Energy in mask', pointing='Pointing game',
              cue_reliance='Cue reliance')


def results_table(rows):
    """Markdown table of ``rows`` ``[(name, {key: value or [values]})]``;
    lists (one value per seed) print as mean +- std."""
    keys = ['accuracy', 'accuracy_class', 'mean_iu', 'fwavacc'] + \
        GAIN_COLUMNS[1:]
    lines = ['| model | ' + ' | '.join(TITLES[k] for k in keys) + ' |',
             '|---' * (len(keys) + 1) + '|']
    for name, m in rows:
        cells = []
        for k in keys:
            v = 100 * np.asarray(m[k], dtype=float)
            cells.append('%.1f' % v if v.ndim == 0 else
                         '%.1f ± %.1f' % (v.mean(), v.std()))
        lines.append('| %s | %s |' % (name, ' | '.join(cells)))
    return '\n'.join(lines)


def main():
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--out', default=os.path.join(HERE, 'runs', 'demo'),
                   help='directory of the runs (a step whose model.npz is '
                   'there is reused)')
    p.add_argument('--media', default=os.path.join(HERE, 'media'),
                   help='where RESULTS.md and the pictures go')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1],
                   help='one GAIN and one GAIN_ext run per seed')
    p.add_argument('--width', type=float, default=0.0625,
                   help='channel multiplier of the FCN8s trained from '
                   'scratch')
    p.add_argument('--fcn-iterations', type=int, default=250,
                   help='updates of train_fcn.py')
    p.add_argument('--classifier-iterations', type=int, default=200,
                   help='updates of train_classifier.py')
    p.add_argument('--gain-lr', type=float, default=3e-4,
                   help='Adam alpha of train_GAIN.py')
    p.add_argument('--ext-weight', type=float, default=10,
                   help='weight of L_ext in the GAIN_ext runs')
    p.add_argument('--gain-iterations', type=int, default=35,
                   help='updates of each train_GAIN.py run')
    p.add_argument('--ext-images', type=int, default=60,
                   help='pixel-supervised images of the GAIN_ext runs')
    args = p.parse_args()
    start = time.time()
    out = args.out
    print('== dataset: %s' % shapes.ensure(), flush=True)
    fcn, cls = os.path.join(out, 'fcn'), os.path.join(out, 'classifier')
    step('1/4 train_fcn: thin FCN8s from scratch (the stand-in for the '
         'pretrained FCN8s)', 'train_fcn.py', fcn, '--width', args.width,
         '--iterations', args.fcn_iterations, '--batch-size', 8,
         '--lr', 2e-3)
    step('2/4 train_classifier: GAIN head on the frozen trunk',
         'train_classifier.py', cls, '--modelfile', fcn + '/model.npz',
         '--iterations', args.classifier_iterations, '--batch-size', 16)
    runs = {}
    for seed in args.seeds:
        for kind, extra in (('GAIN', []),
                            ('GAIN_ext', ['--ext-weight', args.ext_weight,
                                          '--ext-images', args.ext_images])):
            run = os.path.join(out, '%s_seed%d' % (kind.lower(), seed))
            step('3/4 train_GAIN (%s, seed %d)' % (kind, seed),
                 'train_GAIN.py', run, '--modelfile', cls + '/model.npz',
                 '--iterations', args.gain_iterations, '--batch-size', 8,
                 '--lr', args.gain_lr, '--seed', seed, '--val-split', '',
                 '--attention-interval', 20, *extra)
            runs.setdefault(kind, []).append(run)

    print('== 4/4 evaluate on the unbiased test split', flush=True)
    evaluation = os.path.join(out, 'evaluation')
    models = [cls] + [r for kind in ('GAIN', 'GAIN_ext') for r in runs[kind]]
    names = [os.path.basename(m) for m in models]
    subprocess.run([sys.executable, os.path.join(HERE, 'evaluate.py'),
                    '--modelfile'] + [m + '/model.npz' for m in models] +
                   ['--names'] + names + ['--out', evaluation], check=True)
    with open(os.path.join(evaluation, 'metrics.json')) as f:
        metrics = json.load(f)['models']
    for m, name in zip(models, names):
        metrics[name]['cue_reliance'] = cue_reliance(
            load_model(m + '/model.npz')[0])

    rows = [('FCN8s + classifier (before GAIN)', metrics['classifier'])]
    for kind in ('GAIN', 'GAIN_ext'):
        per_seed = [metrics[os.path.basename(r)] for r in runs[kind]]
        rows.append(('%s (%d seeds)' % (kind, len(per_seed)),
                     {k: [m[k] for m in per_seed] for k in per_seed[0]
                      if k in TITLES}))
    table = results_table(rows)

    os.makedirs(args.media, exist_ok=True)
    subprocess.run([sys.executable, os.path.join(HERE, 'visualize.py'),
                    '--pretrained', cls + '/model.npz', '--trained',
                    runs['GAIN_ext'][0] + '/model.npz', '--split', 'test',
                    '--num', '6', '--out', os.path.join(out, 'visualize')],
                   check=True)
    pictures = {
        'attention_before_after.png': os.path.join(out, 'visualize',
                                                   'overview.png'),
        'attention_miou_vs_tau.png': os.path.join(evaluation,
                                                  'attention_miou.png'),
        'loss_fcn.png': os.path.join(fcn, 'loss.png'),
        'loss_classifier.png': os.path.join(cls, 'loss.png'),
        'loss_gain.png': os.path.join(runs['GAIN'][0], 'loss.png'),
        'loss_gain_ext.png': os.path.join(runs['GAIN_ext'][0], 'loss.png'),
    }
    for name, src in pictures.items():
        shutil.copyfile(src, os.path.join(args.media, name))
    write_results(args, table, metrics, names, pictures,
                  time.time() - start)
    print(table)
    print('== demo finished in %.0f s; see %s'
          % (time.time() - start, os.path.join(args.media, 'RESULTS.md')))


def write_results(args, table, metrics, names, pictures, seconds):
    per_model = results_table([(n, metrics[n]) for n in names])
    command = ' '.join('--%s %s' % (k.replace('_', '-'),
                                    ' '.join(map(str, v)) if isinstance(
                                        v, list) else v)
                       for k, v in sorted(vars(args).items())
                       if k not in ('out', 'media'))
    text = """# Demo results (embedded `shapes` dataset, unbiased `test` split)

Produced by `make demo` (`demo.py %s`) in %.0f s.
Percentages; GAIN rows are mean ± std over the seeds. *Cue reliance*: on
images without class c, the share classified as c when c's context cue is
present minus the share when it is absent (0 = the cue is ignored).

%s

Per run:

%s

![image | CAM before | CAM after](attention_before_after.png)

![attention mIoU against the threshold](attention_miou_vs_tau.png)

Loss curves: [FCN8s](loss_fcn.png), [classifier](loss_classifier.png),
[GAIN](loss_gain.png), [GAIN_ext](loss_gain_ext.png).
""" % (command, seconds, table, per_model)
    with open(os.path.join(args.media, 'RESULTS.md'), 'w') as f:
        f.write(text)


if __name__ == '__main__':
    main()
