#!/usr/bin/env python
"""The whole pipeline on the embedded ``shapes`` dataset.

0. the stand-in for the pretrained FCN8s: a thin FCN8s trained for
   segmentation and multi-label classification (``train_fcn.py
   --cls-weight 1``); the CPU preset takes the shipped
   ``models/pretrained/fcn8s_shapes_v1.npz`` unless ``--retrain-fcn``;
1. ``train_classifier.py``: a fresh GAIN head on the frozen trunk;
2. ``train_GAIN.py``: GAIN and GAIN_ext for each of ``--seeds``, run as
   ``--jobs`` parallel processes of one thread each (the same numbers
   whatever ``--jobs``);
3. ``evaluate.py`` on the unbiased ``test`` split, ``visualize.py``.

Writes ``media/results.json``, ``media/RESULTS.md``, the pictures, and the
results section of README.md. A step whose model exists in ``--out`` from
the same command line is reused.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np

from models.precision import PRECISIONS
from runtime import flags
from runtime.files import write_text

HERE = os.path.dirname(os.path.abspath(__file__))
STAND_IN = os.path.join(HERE, 'models', 'pretrained', 'fcn8s_shapes_v1.npz')
PRESETS = {
    # 2 CPU cores, about 10 minutes (the stand-in is shipped). L_am and
    # L_seg weights 2, sigma 0.4, L_ext weight 5 rather than the paper's 1,
    # 1, 0.5 and issue 11's 10: on this thin trunk the best of the sweep in
    # models/pretrained/README.md.
    'cpu': dict(width=0.0625, fcn_iterations=1500, fcn_lr=1e-3,
                classifier_iterations=600, gain_iterations=150, gain_lr=3e-4,
                am_weight=2.0, seg_weight=2.0, sigma=0.4, ext_images=60,
                ext_weight=5.0),
    # one GPU, minutes (the stand-in is trained); the schedule of issue 11's
    # H100 table
    'gpu': dict(width=0.25, fcn_iterations=1500, fcn_lr=1e-3,
                classifier_iterations=1000, gain_iterations=300,
                gain_lr=3e-4, am_weight=1.0, seg_weight=1.0, sigma=0.5,
                ext_images=60, ext_weight=10),
}
THREADS = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')
# The claims of the demo, checked per seed (percentage points).
TARGETS = dict(attention_miou=5.0, pointing=10.0, map=2.0, mean_iu=-1.0)


class Step(object):
    """One run of a project script, writing ``out/model.npz``; its command
    line is kept in ``out.demo.json``, so an unchanged step is reused and a
    changed one starts over (``--force``)."""

    def __init__(self, title, script, out, args, device, logs):
        self.title, self.script, self.out = title, script, out
        self.args = ['--out', out, '--device', str(device)] + [
            str(a) for a in args]
        self.log = os.path.join(logs, os.path.basename(out) + '.txt')
        self.proc = None
        self.started = None

    @property
    def model(self):
        return os.path.join(self.out, 'model.npz')

    def _record(self):
        return self.out + '.demo.json'

    def done(self):
        try:
            with open(self._record()) as f:
                same = json.load(f) == [self.script] + self.args
        except (OSError, ValueError):
            return False
        return same and os.path.exists(self.model)

    def start(self, env):
        args = list(self.args)
        if os.path.exists(self.out):
            args.append('--force')       # another command line made it
        self.started = time.time()
        with open(self.log, 'w') as log:
            self.proc = subprocess.Popen(
                [sys.executable, os.path.join(HERE, self.script)] + args,
                stdout=log, stderr=subprocess.STDOUT, env=env)

    def iteration(self):
        """The last iteration in the run's log (0 before the first)."""
        try:
            with open(os.path.join(self.out, 'log')) as f:
                return json.load(f)[-1]['iteration']
        except (OSError, ValueError, IndexError, KeyError):
            return 0

    def finish(self):
        """Wait for the process; exit with its log's tail if it failed."""
        if self.proc.wait() != 0:
            with open(self.log) as f:
                tail = f.read()[-3000:]
            sys.exit('%s\nerror: %s failed (exit %d); its output is in %s'
                     % (tail, self.title, self.proc.returncode, self.log))
        with open(self._record(), 'w') as f:
            json.dump([self.script] + self.args, f)
        print('== %s: done in %.0f s' % (self.title,
                                         time.time() - self.started),
              flush=True)


def run_steps(steps, jobs, iterations, env):
    """Run ``steps`` ``jobs`` at a time, printing their progress (training
    iterations out of ``iterations``) every 20 s."""
    todo = []
    for s in steps:
        if s.done():
            print('== %s: reusing %s' % (s.title, s.out), flush=True)
        else:
            todo.append(s)
    running, last = [], time.time()
    while todo or running:
        while todo and len(running) < jobs:
            step = todo.pop(0)
            print('== %s (output in %s)' % (step.title, step.log), flush=True)
            step.start(env)
            running.append(step)
        time.sleep(0.5)
        for step in [s for s in running if s.proc.poll() is not None]:
            running.remove(step)
            step.finish()
        if running and time.time() - last > 20:
            last = time.time()
            print('   ' + ', '.join('%s %d/%d' % (s.title, s.iteration(),
                                                 iterations)
                                    for s in running), flush=True)


def child_env(device):
    """One BLAS thread per process on a CPU: the parallel jobs then share
    the cores, and every run computes the same sums in the same order."""
    env = dict(os.environ)
    if str(device) in ('-1', '@numpy'):
        env.update({k: '1' for k in THREADS})
    return env


def cue_reliance(model, data):
    """How much a classifier's decisions follow the context cues.

    Over (image, class c) pairs where c is absent: the share scored
    positive (logit > 0) when c's cue is in the image minus the share when
    it is not. A classifier that ignores the cues scores ~0.
    """
    import chainer
    from datasets import preprocess_batch
    with open(os.path.join(data.data_dir, 'meta.json')) as f:
        meta = json.load(f)
    names = meta['class_names'][1:]
    entries = [meta['images'][i] for i in data.ids]
    present = np.array([[n in e['classes'] for n in names] for e in entries])
    cue = np.array([[meta['cue_of_class'][n] in e['cues'] for n in names]
                    for e in entries])
    x = preprocess_batch([data[i][0] for i in range(len(data))])
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        positive = np.concatenate([model.classify(x[i:i + 50]).array > 0
                                   for i in range(0, len(x), 50)])
    absent = ~present
    return float(positive[absent & cue].mean() -
                 positive[absent & ~cue].mean())


COLUMNS = ['mean_iu', 'map', 'attention_miou', 'attention_miou_fixed',
           'energy', 'pointing', 'zero_cams', 'cue_reliance']
TITLES = dict(accuracy='Accuracy', accuracy_class='Accuracy Class',
              mean_iu='Mean IU', fwavacc='FWAVACC', map='mAP',
              attention_miou='Attention mIoU (best tau)',
              attention_miou_fixed='Attention mIoU (tau 0.5)',
              energy='Energy in mask', pointing='Pointing game',
              zero_cams='Zero CAMs', cue_reliance='Cue reliance')


def results_table(rows, keys=COLUMNS):
    """Markdown table of ``rows`` ``[(name, {key: value or [values]})]``
    in percent; lists (one value per seed) print as mean +- std."""
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


def check_targets(results):
    """``[(claim, [bool per seed])]``: what the demo shows, per seed."""
    models, groups = results['models'], results['groups']
    base = models[groups['classifier'][0]]
    gain = [models[r] for r in groups['GAIN']]
    ext = [models[r] for r in groups['GAIN_ext']]

    def gain_over_base(key):
        return [100 * (m[key] - base[key]) >= TARGETS[key] for m in gain]

    return [
        ('GAIN: attention mIoU (best tau) >= classifier + %g'
         % TARGETS['attention_miou'], gain_over_base('attention_miou')),
        ('GAIN: pointing game >= classifier + %g' % TARGETS['pointing'],
         gain_over_base('pointing')),
        ('GAIN: mAP >= classifier + %g' % TARGETS['map'],
         gain_over_base('map')),
        ('GAIN_ext: attention mIoU (tau 0.5) and energy >= GAIN\'s (same '
         'seed)', [e['attention_miou_fixed'] >= g['attention_miou_fixed'] and
                   e['energy'] >= g['energy'] for g, e in zip(gain, ext)]),
        ('GAIN and GAIN_ext: Mean IU >= classifier %g'
         % TARGETS['mean_iu'],
         [100 * (g['mean_iu'] - base['mean_iu']) >= TARGETS['mean_iu'] and
          100 * (e['mean_iu'] - base['mean_iu']) >= TARGETS['mean_iu']
          for g, e in zip(gain, ext)]),
    ]


def write_media(args, results, pictures, seconds):
    """``results.json``, the pictures and ``RESULTS.md`` in ``--media``;
    the README's results section when ``--media`` is the project's."""
    os.makedirs(args.media, exist_ok=True)
    write_text(os.path.join(args.media, 'results.json'),
               json.dumps(results, indent=1, sort_keys=True))
    for name, src in pictures.items():
        shutil.copyfile(src, os.path.join(args.media, name))
    models, groups = results['models'], results['groups']
    summary = results_table(
        [('FCN8s + classifier (before GAIN)', models[groups['classifier'][0]])]
        + [('%s (%d seeds)' % (kind, len(groups[kind])),
            {k: [models[r][k] for r in groups[kind]] for k in COLUMNS})
           for kind in ('GAIN', 'GAIN_ext')])
    per_run = results_table([(r, models[r]) for rs in groups.values()
                             for r in rs])
    checks = '\n'.join('- %s: %s' % (claim, ', '.join(
        'seed %d %s' % (s, 'yes' if ok else 'NO')
        for s, ok in zip(results['seeds'], oks)))
        for claim, oks in check_targets(results))
    text = RESULTS % dict(command=results['command'], seconds=seconds,
                          summary=summary, per_run=per_run, checks=checks,
                          seed=results['seeds'][0])
    write_text(os.path.join(args.media, 'RESULTS.md'), text)
    readme = os.path.join(HERE, 'README.md')
    if os.path.abspath(args.media) == os.path.join(HERE, 'media'):
        with open(readme) as f:
            old = f.read()
        section = README_SECTION % dict(command=results['command'],
                                        seconds=seconds, summary=summary,
                                        checks=checks)
        new = re.sub(r'(<!-- demo results -->\n).*?(<!-- /demo results -->)',
                     lambda m: m.group(1) + section + m.group(2), old,
                     flags=re.S)
        write_text(readme, new)
    return summary, checks


RESULTS = """# Demo results (embedded `shapes` dataset, unbiased `test` split)

Written by `make demo` (`%(command)s`) in %(seconds).0f s; the numbers are
also in [results.json](results.json). Percentages; GAIN rows are mean ± std
over the seeds. *Zero CAMs*: share of flat Grad-CAMs. *Cue reliance*: on
images without class c, the share classified as c when c's context cue is
present minus the share when it is absent (0 = the cue is ignored).

%(summary)s

Per run:

%(per_run)s

What the demo claims, per seed:

%(checks)s

![image | Grad-CAM before GAIN | Grad-CAM after GAIN](attention_before_after.png)

![attention mIoU against the threshold](attention_miou_vs_tau.png)

Training curves: [stand-in FCN8s](loss_fcn.png),
[classifier](loss_classifier.png), [GAIN](loss_gain.png) (seed %(seed)d),
[GAIN's validation attention](attention_val_gain.png),
[GAIN_ext](loss_gain_ext.png); what GAIN erases at its last iteration:
[image | CAM | mask | erased image](attention_during_gain.png).
"""

README_SECTION = """`%(command)s`, %(seconds).0f s (percentages, mean ± std over the seeds;
every run in [media/RESULTS.md](media/RESULTS.md) and
[media/results.json](media/results.json)):

%(summary)s

Per seed:

%(checks)s

"""


def gain_steps(step, cfg, seeds, classifier):
    """``{'GAIN': [Step], 'GAIN_ext': [Step]}``, one run per seed, from
    the ``classifier`` model file."""
    runs = {'GAIN': [], 'GAIN_ext': []}
    for seed in seeds:
        for kind, extra in (('GAIN', []),
                            ('GAIN_ext', ['--ext-weight', cfg['ext_weight'],
                                          '--ext-images',
                                          cfg['ext_images']])):
            runs[kind].append(step(
                '2/3 %s seed %d' % (kind, seed), 'train_GAIN.py',
                '%s_seed%d' % (kind.lower(), seed), '--modelfile', classifier,
                '--iterations', cfg['gain_iterations'], '--batch-size', 8,
                '--lr', cfg['gain_lr'], '--am-weight', cfg['am_weight'],
                '--seg-weight', cfg['seg_weight'], '--sigma', cfg['sigma'],
                '--seed', seed,
                '--attention-interval', cfg['gain_iterations'], *extra))
    return runs


def evaluate_steps(steps, names, device, out):
    """evaluate.py's metrics of each step's model on the test split, under
    ``names``, with their cue reliance."""
    print('== 3/3 evaluate on the unbiased test split', flush=True)
    subprocess.run([sys.executable, os.path.join(HERE, 'evaluate.py'),
                    '--device', str(device), '--modelfile'] +
                   [s.model for s in steps] + ['--names'] + names +
                   ['--out', out], check=True)
    with open(os.path.join(out, 'metrics.json')) as f:
        metrics = json.load(f)['models']
    from datasets import get_dataset
    from models import load_model
    test = get_dataset('shapes', None, 'test')
    for s, name in zip(steps, names):
        metrics[name]['cue_reliance'] = cue_reliance(load_model(s.model)[0],
                                                     test)
    return metrics


def pictures_of(cls, runs, evaluation, visual, iterations):
    """``{media name: source}`` of the pictures the demo publishes."""
    first = runs['GAIN'][0].out
    return {
        'attention_before_after.png': os.path.join(visual, 'overview.png'),
        'attention_miou_vs_tau.png': os.path.join(evaluation,
                                                  'attention_miou.png'),
        'loss_classifier.png': os.path.join(cls.out, 'loss.png'),
        'loss_gain.png': os.path.join(first, 'loss.png'),
        'attention_val_gain.png': os.path.join(first, 'attention_val.png'),
        'loss_gain_ext.png': os.path.join(runs['GAIN_ext'][0].out,
                                          'loss.png'),
        'attention_during_gain.png': os.path.join(
            first, 'attention', 'iter_%06d.png' % iterations),
    }


def main():
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='-1',
                   help='-1 for the CPU, N for GPU N (default preset: gpu)')
    p.add_argument('--preset', choices=sorted(PRESETS), default=None,
                   help='schedule and width (default: gpu with --device N, '
                   'else cpu): ' + '; '.join(
                       '%s: %s' % (k, ', '.join('%s %s' % (n, v) for n, v in
                                                sorted(d.items())))
                       for k, d in sorted(PRESETS.items())))
    for key in sorted(PRESETS['cpu']):
        p.add_argument('--' + key.replace('_', '-'), default=None,
                       type=int if key.endswith('iterations') or
                       key == 'ext_images' else float, help='override the preset\'s %s' % key)
    p.add_argument('--seeds', type=flags.seed, nargs='+', default=[0, 1],
                   help='seeds of the GAIN and GAIN_ext runs')
    p.add_argument('--jobs', type=int, default=os.cpu_count() or 1,
                   help='GAIN runs at a time (CPU; 1 on a GPU)')
    p.add_argument('--retrain-fcn', action='store_true',
                   help='train the stand-in FCN8s instead of taking %s'
                   % os.path.relpath(STAND_IN, HERE))
    p.add_argument('--dtype', default='float32',
                   choices=PRECISIONS,
                   help='--dtype of the training steps (see '
                   'train_GAIN.py --help)')
    p.add_argument('--out', default=os.path.join(HERE, 'runs', 'demo'),
                   help='directory of the runs')
    p.add_argument('--media', default=os.path.join(HERE, 'media'),
                   help='where results and pictures go (the README section '
                   'is rewritten only for the project\'s media/)')
    args = p.parse_args()
    gpu = str(args.device) not in ('-1', '@numpy')
    preset = args.preset or ('gpu' if gpu else 'cpu')
    cfg = dict(PRESETS[preset])
    cfg.update({k: getattr(args, k) for k in cfg
                if getattr(args, k) is not None})
    jobs = 1 if gpu else max(1, args.jobs)
    env = child_env(args.device)
    start = time.time()
    out, logs = args.out, os.path.join(args.out, 'logs')
    os.makedirs(logs, exist_ok=True)

    from datasets import shapes
    print('== dataset: %s' % shapes.ensure(), flush=True)

    precision = ('--dtype', args.dtype) if args.dtype != 'float32' else ()

    def step(title, script, name, *a):
        return Step(title, script, os.path.join(out, name), a + precision,
                    args.device, logs)

    shipped = not args.retrain_fcn and all(
        cfg[k] == PRESETS['cpu'][k] for k in ('width', 'fcn_iterations',
                                              'fcn_lr'))
    if shipped:
        fcn_model = STAND_IN
        print('== 0/3 stand-in FCN8s: %s (--retrain-fcn trains it)'
              % os.path.relpath(STAND_IN, HERE), flush=True)
    else:
        fcn = step('0/3 train_fcn (stand-in FCN8s)', 'train_fcn.py', 'fcn',
                   '--width', cfg['width'], '--cls-weight', 1,
                   '--iterations', cfg['fcn_iterations'], '--batch-size', 8,
                   '--lr', cfg['fcn_lr'], '--seed', 0,
                   '--snapshot-interval', 250)
        run_steps([fcn], 1, cfg['fcn_iterations'], env)
        fcn_model = fcn.model
    cls = step('1/3 train_classifier', 'train_classifier.py', 'classifier',
               '--modelfile', fcn_model, '--iterations',
               cfg['classifier_iterations'], '--batch-size', 16)
    run_steps([cls], 1, cfg['classifier_iterations'], env)

    runs = gain_steps(step, cfg, args.seeds, cls.model)
    run_steps(runs['GAIN'] + runs['GAIN_ext'], jobs, cfg['gain_iterations'],
              env)

    steps = [cls] + runs['GAIN'] + runs['GAIN_ext']
    names = [os.path.basename(s.out) for s in steps]
    evaluation = os.path.join(out, 'evaluation')
    metrics = evaluate_steps(steps, names, args.device, evaluation)
    visual = os.path.join(out, 'visualize')
    subprocess.run([sys.executable, os.path.join(HERE, 'visualize.py'),
                    '--device', str(args.device), '--pretrained', cls.model,
                    '--trained', runs['GAIN'][0].model, '--split', 'test',
                    '--num', '6', '--out', visual], check=True)

    seconds = time.time() - start
    command = 'demo.py ' + ' '.join(
        ['--preset %s' % preset, '--seeds ' + ' '.join(map(str, args.seeds))]
        + ['--%s %s' % (k.replace('_', '-'), v) for k, v in sorted(
            cfg.items())] + (['--retrain-fcn'] if not shipped else []) +
        list(precision))
    results = dict(
        models={n: {k: v for k, v in metrics[n].items()
                    if not isinstance(v, (list, dict))} for n in names},
        groups={'classifier': [names[0]],
                'GAIN': [os.path.basename(s.out) for s in runs['GAIN']],
                'GAIN_ext': [os.path.basename(s.out)
                             for s in runs['GAIN_ext']]},
        seeds=args.seeds, command=command, seconds=round(seconds),
        stand_in=os.path.relpath(fcn_model, HERE))
    pictures = pictures_of(cls, runs, evaluation, visual,
                           cfg['gain_iterations'])
    if not shipped:
        pictures['loss_fcn.png'] = os.path.join(out, 'fcn', 'loss.png')
    summary, checks = write_media(args, results, pictures, seconds)
    print(summary)
    print(checks)
    print('== demo finished in %.0f s; see %s'
          % (seconds, os.path.join(args.media, 'RESULTS.md')))


if __name__ == '__main__':
    main()
