#!/usr/bin/env python
"""Benchmark of the GAIN training step against its cost floor.

Measures, side by side in one run, the per-image time of a plain FCN8s
segmentation step, a classifier-stage step, a GAIN step of each am_mode and
cam_grad, Grad-CAM inference, a classify forward and an evaluation forward;
the machine-independent ratios between them against the issue's targets
(PASS/MISS); the peak memory of each (host RSS, and on GPU the CuPy memory
pool); and whether any float64 array appears in a step.

Each configuration (width, size, batch) runs in a fresh subprocess: one
model, every operation warmed up (``--warmup`` iterations, untimed), then
timed in rounds, each round running every operation once (fast ones
repeated up to ``--min-time`` seconds) in an order that alternates between
rounds, with the two operations of each target ratio next to each other.
Times are medians over the rounds (``--repeat`` rounds, fewer when a round
would pass ``--time-budget``, at least one); a ratio is the median of its
per-round ratios, so both sides of it saw the same load even on a machine
shared with other work. The peak RSS of each operation comes from
``getrusage`` with the peak reset (``/proc/self/clear_refs``) before it, in
the first round. A missed target is profiled (per chainer function and with
cProfile) into ``<out>/profile_*.txt``.

Writes ``<out>/results.json`` and ``<out>/results.png`` and prints markdown
tables. Defaults: on CPU, width 1.0 at 320x320 batch 1 (a batch of 8 at
full width would take over 5 minutes per round of 11 operations on 2 cores)
and the demo's thin model (width 0.0625, 96x96, batch 8); on GPU also width
1.0 at 320x320 batch 8.
"""
import argparse
import datetime
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.ops import DESCRIPTION, MIXED_OPS, OPS  # NOQA: E402
from runtime.files import write_text  # NOQA: E402

CPU_CONFIGS = [(1.0, 320, 1), (0.0625, 96, 8)]
GPU_CONFIGS = [(1.0, 320, 1), (1.0, 320, 8), (0.0625, 96, 8)]
QUICK_CONFIGS = [(0.0625, 48, 1), (0.0625, 48, 2)]

# (name, numerator op, denominator op, target, kind): ``max``: the ratio
# of per-image times must be <= target; ``min``: >= target.
RATIOS = [
    ('GAIN (joint, activations) / segmentation step',
     'gain_joint_activations', 'seg_step', 2.2, 'max'),
    ('full / activations (joint)',
     'gain_joint_full', 'gain_joint_activations', 1.5, 'max'),
    ('full / activations (per-class)',
     'gain_per-class_full', 'gain_per-class_activations', 1.5, 'max'),
    ('Grad-CAM inference / classify forward', 'grad_cam', 'classify', 1.2,
     'max'),
    ('mixed16 / float32 GAIN step (joint, activations)',
     'gain_joint_activations_mixed16', 'gain_joint_activations', 1.0, 'max'),
    ('mixed16 / float32 segmentation step', 'seg_step_mixed16', 'seg_step',
     1.0, 'max'),
]
BATCH_OP = 'gain_joint_activations'   # the op of the batch-8 throughput target
# Timing order of a round (reversed every other round): the two sides of
# each ratio above are neighbours.
RUN_ORDER = ['seg_step_mixed16', 'seg_step', 'gain_joint_activations',
             'gain_joint_activations_mixed16', 'gain_joint_full',
             'gain_joint_mask-only', 'gain_per-class_mask-only',
             'gain_per-class_activations', 'gain_per-class_full',
             'cls_step', 'classify', 'grad_cam', 'evaluate']


# ----------------------------------------------------------------------------
# worker: one configuration in this process
# ----------------------------------------------------------------------------

def _maxrss_mib():
    # Linux: ru_maxrss is in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rss_mib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    return float('nan')


def reset_peak_rss():
    """Reset this process's peak RSS (Linux >= 4.0); False if refused."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def release_free_memory():
    """Hand the C heap's free memory back to the OS (glibc), so that the
    RSS at an operation's start holds only live arrays."""
    import gc
    gc.collect()
    try:
        import ctypes
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _sync_function(device):
    if device.xp.__name__ == 'cupy':
        import cupy
        return lambda: cupy.cuda.Device().synchronize()
    return lambda: None


def make_phase_timer(sync):
    """A function hook timing each (function, phase), exclusive of the
    functions applied inside it (a backward applies gradient functions);
    on GPU it synchronises around each function (profiles only)."""
    import chainer

    class PhaseTimer(chainer.FunctionHook):
        name = 'PhaseTimer'

        def __init__(self):
            self.total, self.count, self._stack = {}, {}, []

        def _pre(self):
            sync()
            self._stack.append([time.perf_counter(), 0.0])

        def _post(self, key):
            sync()
            start, inner = self._stack.pop()
            dt = time.perf_counter() - start
            if self._stack:
                self._stack[-1][1] += dt
            self.total[key] = self.total.get(key, 0.0) + dt - inner
            self.count[key] = self.count.get(key, 0) + 1

        def forward_preprocess(self, function, in_data):
            self._pre()

        def forward_postprocess(self, function, in_data):
            self._post((function.label, 'forward'))

        def backward_preprocess(self, function, in_data, out_grad):
            self._pre()

        def backward_postprocess(self, function, in_data, out_grad):
            self._post((function.label, 'backward'))

    return PhaseTimer()


def make_pool_peak():
    """A function hook keeping the largest ``used_bytes()`` of the CuPy
    memory pool, sampled after every chainer function."""
    import chainer
    import cupy
    pool = cupy.get_default_memory_pool()

    class PoolPeak(chainer.FunctionHook):
        name = 'PoolPeak'

        def __init__(self):
            self.peak = pool.used_bytes()

        def _sample(self):
            self.peak = max(self.peak, pool.used_bytes())

        def forward_postprocess(self, function, in_data):
            self._sample()

        def backward_postprocess(self, function, in_data, out_grad):
            self._sample()

    return PoolPeak()


def profile_op(op, sync, wall, path, title):
    """One step under a per-function timer and cProfile together; writes
    what dominates to ``path``."""
    import cProfile
    import io
    import pstats
    timer = make_phase_timer(sync)
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    with timer:
        pr.enable()
        op.run()
        sync()
        pr.disable()
    timed = time.perf_counter() - t0
    in_functions = sum(timer.total.values())
    lines = ['# %s' % title,
             'median step (timed run, no hooks): %.4f s' % wall,
             'step under the function timer and cProfile: %.4f s, of which '
             'in chainer '
             'functions: %.4f s (%.0f%%); the rest is Python, graph '
             'bookkeeping and the optimizer update (times are exclusive: '
             'a backward\'s own gradient functions are listed as their own '
             'forward)'
             % (timed, in_functions, 100 * in_functions / max(timed, 1e-12)),
             '', '## chainer functions by total time',
             '%-32s %-9s %10s %7s %6s' % ('function', 'phase', 'seconds',
                                          'calls', 'share')]
    for key, t in sorted(timer.total.items(), key=lambda kv: -kv[1])[:30]:
        lines.append('%-32s %-9s %10.4f %7d %5.1f%%'
                     % (key[0][:32], key[1], t, timer.count[key],
                        100 * t / max(timed, 1e-12)))
    for order, n in (('cumulative', 35), ('tottime', 15)):
        buf = io.StringIO()
        pstats.Stats(pr, stream=buf).sort_stats(order).print_stats(n)
        lines += ['', '## cProfile of the same step, by %s' % order,
                  buf.getvalue()]
    with open(path, 'w') as f:
        f.write('\n'.join(lines))
    ranked = sorted(timer.total.items(), key=lambda kv: -kv[1])[:5]
    return dict(path=path, step_s=timed, in_functions_s=in_functions,
                top=[dict(function=k[0], phase=k[1], seconds=t,
                          share=t / max(timed, 1e-12)) for k, t in ranked])


def time_op(op, sync, min_time, max_inner):
    """Run ``op`` once, and again until ``min_time`` seconds (at most
    ``max_inner`` runs); the median wall and CPU time of a run and the
    number of runs."""
    wall, cpu = [], []
    while not wall or (sum(wall) < min_time and len(wall) < max_inner):
        c0, t0 = time.process_time(), time.perf_counter()
        op.run()
        sync()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), len(wall)


def config_worker(spec):
    """Every op of ``spec['ops']`` on one model: warm-up, then rounds."""
    from bench.ops import build, make_model
    from bench.random_batch import make_batch
    from runtime.device import get_device
    device = get_device(spec['device'])
    if spec.get('mode') == 'dtypes':
        return dtype_worker(spec, device)
    sync = _sync_function(device)
    gpu = device.xp.__name__ == 'cupy'
    names = [n for n in RUN_ORDER if n in spec['ops']]
    model = make_model(spec['width'])
    model.to_device(device)
    optimizers = {}
    batch = make_batch(spec['batch'], spec['size'])
    ops = {n: build(n, model, batch, device, optimizers=optimizers)
           for n in names}
    warm_size = spec.get('warmup_size') or spec['size']
    if warm_size != spec['size']:
        small = make_batch(spec['batch'], warm_size)
    for n in names:
        warm = ops[n] if warm_size == spec['size'] else build(
            n, model, small, device, share=ops[n])
        for _ in range(spec['warmup']):
            warm.run()
            sync()
        del warm
    if spec.get('profile'):
        op = ops[spec['profile_op']]
        return dict(spec, profile=profile_op(
            op, sync, spec['measured_s'], spec['profile'], spec['title']))

    can_reset = reset_peak_rss()
    rec = {n: dict(wall=[], cpu=[], inner=[]) for n in names}
    started, rounds, round_s = time.perf_counter(), 0, []
    while True:
        t_round = time.perf_counter()
        for n in (names if rounds % 2 == 0 else names[::-1]):
            first = rounds == 0
            if first:
                release_free_memory()
                rec[n]['rss_before_mib'] = _rss_mib()
                reset_peak_rss()
            w, c, k = time_op(ops[n], sync, spec['min_time'],
                              spec['max_inner'])
            if first:
                rec[n]['rss_peak_mib'] = _maxrss_mib() if can_reset else None
            rec[n]['wall'].append(w)
            rec[n]['cpu'].append(c)
            rec[n]['inner'].append(k)
        rounds += 1
        round_s.append(time.perf_counter() - t_round)
        elapsed = time.perf_counter() - started
        if rounds >= spec['repeat'] or \
                elapsed + round_s[-1] > spec['time_budget']:
            break
    out = dict(spec, rounds=rounds, round_s=round_s,
               peak_rss_reset=can_reset, process_peak_rss_mib=None, ops={})
    for n in names:
        r = rec[n]
        m = dict(op=n, info=ops[n].info, wall_s=r['wall'], cpu_s=r['cpu'],
                 inner=r['inner'], median_s=statistics.median(r['wall']),
                 median_cpu_s=statistics.median(r['cpu']),
                 rss_before_mib=r['rss_before_mib'],
                 rss_peak_mib=r['rss_peak_mib'])
        m['per_image_s'] = m['median_s'] / spec['batch']
        out['ops'][n] = m
    if gpu:
        import cupy
        pool = cupy.get_default_memory_pool()
        for n in names:   # one more, untimed run under a sampling hook
            sync()
            before = pool.used_bytes()
            peak = make_pool_peak()
            with peak:
                ops[n].run()
                sync()
            out['ops'][n].update(
                gpu_used_before_mib=before / 2.0 ** 20,
                gpu_used_peak_mib=peak.peak / 2.0 ** 20)
        out['gpu_pool_total_mib'] = pool.total_bytes() / 2.0 ** 20
    if not can_reset:
        out['process_peak_rss_mib'] = _maxrss_mib()
    return out


def dtype_worker(spec, device):
    """Every op once, then once more under a dtype recorder (thin model)."""
    from bench.dtypes import check_step
    from bench.ops import build, make_model
    from bench.random_batch import make_batch
    result = {}
    batch = make_batch(spec['batch'], spec['size'])
    for name in OPS:
        model = make_model(spec['width'])
        model.to_device(device)
        op = build(name, model, batch, device)
        op.run()
        result[name] = check_step(op.run, op.loss, op.optimizer)
    return dict(spec, ops=result,
                float64={k: v['float64'] for k, v in result.items()
                         if v['float64']})


# ----------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------

def run_worker(spec, timeout):
    """``spec`` in a fresh interpreter; its dict, or ``{'error': ...}``."""
    import tempfile
    fd, path = tempfile.mkstemp(suffix='.json', prefix='bench_')
    os.close(fd)
    cmd = [sys.executable, os.path.abspath(__file__), '--worker',
           json.dumps(spec), '--worker-out', path]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return dict(spec, error='exit %d: %s' % (proc.returncode,
                                                    ' | '.join(tail)))
        with open(path) as f:
            return json.load(f)
    except subprocess.TimeoutExpired:
        return dict(spec, error='timed out after %d s' % timeout)
    finally:
        os.remove(path)


def config_name(width, size, batch):
    return 'w%g %dx%d b%d' % (width, size, size, batch)


def config_slug(width, size, batch):
    return 'w%g_s%d_b%d' % (width, size, batch)


def machine_info(device_spec):
    info = dict(platform=platform.platform(), python=platform.python_version(),
                cores=os.cpu_count(), load_average_start=os.getloadavg())
    try:
        with open('/proc/cpuinfo') as f:
            fields = dict(l.split(':', 1) for l in f if ':' in l)
        info['cpu'] = fields.get('model name\t', '').strip() or \
            platform.processor()
        info['cpu_family_model'] = '%s/%s' % (
            fields.get('cpu family\t', '?').strip(),
            fields.get('model\t\t', '?').strip())
    except OSError:
        info['cpu'] = platform.processor()
    import chainer
    import numpy
    info.update(chainer=chainer.__version__, numpy=numpy.__version__)
    try:
        import cupy
        info['cupy'] = cupy.__version__
    except ImportError:
        info['cupy'] = None
    if is_gpu(device_spec):
        try:
            import cupy
            props = cupy.cuda.runtime.getDeviceProperties(
                cupy.cuda.Device().id)
            info['gpu'] = props['name'].decode()
        except Exception as e:  # reported; get_device fails on its own
            info['gpu'] = 'unknown (%s)' % e
    return info


def plan(args, gpu):
    if args.quick:
        return QUICK_CONFIGS
    if args.widths or args.sizes or args.batch_sizes:
        return list(itertools.product(args.widths or [1.0],
                                      args.sizes or [320],
                                      args.batch_sizes or [1]))
    return GPU_CONFIGS if gpu else CPU_CONFIGS


def warmup_size(flag, cfg, gpu):
    width, size, _ = cfg
    if flag == 'same':
        return size
    if flag == 'auto':
        return 64 if not gpu and width >= 0.5 and size > 96 else size
    return min(int(flag), size)


def is_gpu(spec):
    spec = str(spec)
    if spec.startswith('@cupy'):
        return True
    try:
        return int(spec) >= 0
    except ValueError:
        return False


def ratio_rows(measure, configs, gpu):
    """The targets' ratios: the median of the per-round ratios of the two
    operations (measured next to each other), with the ratio of their
    medians and of their CPU times beside it."""
    rows = []
    for cfg in configs:
        for name, num, den, target, kind in RATIOS:
            a, b = measure.get((cfg, num)), measure.get((cfg, den))
            if not a or not b:
                continue
            per_round = [x / y for x, y in zip(a['wall_s'], b['wall_s'])]
            rows.append(dict(
                ratio=name, config=config_name(*cfg), cfg=list(cfg),
                numerator=[list(cfg), num], denominator=[list(cfg), den],
                value=statistics.median(per_round), per_round=per_round,
                ratio_of_medians=a['per_image_s'] / b['per_image_s'],
                cpu_time_value=statistics.median(
                    [x / y for x, y in zip(a['cpu_s'], b['cpu_s'])]),
                target=target, kind=kind, gpu_only=False))
    for cfg in configs:   # batch-8 per-image throughput against batch 1
        base = (cfg[0], cfg[1], 1)
        a, b = measure.get((base, BATCH_OP)), measure.get((cfg, BATCH_OP))
        if cfg[2] != 8 or not a or not b:
            continue
        value = a['per_image_s'] / b['per_image_s']
        rows.append(dict(
            ratio='batch 8 / batch 1 per-image throughput (%s)' % BATCH_OP,
            config=config_name(*cfg), cfg=list(cfg),
            numerator=[list(base), BATCH_OP], denominator=[list(cfg), BATCH_OP],
            value=value, per_round=None, ratio_of_medians=value,
            cpu_time_value=None, target=2.0, kind='min', gpu_only=True))
    for r in rows:
        ok = (r['value'] <= r['target'] if r['kind'] == 'max'
              else r['value'] >= r['target'])
        r['verdict'] = ('n/a (target is for GPU)' if r['gpu_only'] and
                        not gpu else 'PASS' if ok else 'MISS')
    return rows


def fmt_ms(seconds):
    ms = 1000.0 * seconds
    return '%.0f' % ms if ms >= 100 else '%.1f' % ms if ms >= 1 else \
        '%.3f' % ms


def markdown(results):
    configs = [tuple(c) for c in results['configs']]
    measure = {(tuple(m['cfg']), m['op']): m for m in results['measurements']}
    gpu = results['gpu']
    mem = 'GPU pool' if gpu else 'RSS'
    head = ['operation'] + ['%s: ms/image (x seg step)' % config_name(*c)
                            for c in configs] + \
        ['%s: peak %s MiB (op\'s own)' % (config_name(*c), mem)
         for c in configs]
    lines = ['| ' + ' | '.join(head) + ' |', '|---' * len(head) + '|']
    for op in results['ops']:
        cells, mems = [DESCRIPTION[op]], []
        for c in configs:
            m, seg = measure.get((c, op)), measure.get((c, 'seg_step'))
            if m is None:
                cells.append('-')
                mems.append('-')
                continue
            rel = '' if not seg else ' (%.2fx)' % (
                m['per_image_s'] / seg['per_image_s'])
            extra = ''
            if 'erased_images' in m['info']:
                extra = ' [%d erased]' % m['info']['erased_images']
            cells.append(fmt_ms(m['per_image_s']) + rel + extra)
            if gpu:
                peak, before = m.get('gpu_used_peak_mib'), m.get(
                    'gpu_used_before_mib')
            else:
                peak, before = m['rss_peak_mib'], m['rss_before_mib']
            mems.append('-' if peak is None else '%.0f (%+.0f)' % (
                peak, peak - before))
        lines.append('| ' + ' | '.join(cells + mems) + ' |')
    notes = []
    for c in configs:
        w = results['workers'].get(config_name(*c), {})
        if 'rounds' in w:
            ms = [m for m in results['measurements'] if tuple(m['cfg']) == c]
            inner = [k for m in ms for k in m['inner']]
            notes.append('%s: %d round(s) of %s s, each operation run %d '
                         'to %d times a round' % (
                             config_name(*c), w['rounds'],
                             ', '.join('%.0f' % s for s in w['round_s']),
                             min(inner), max(inner)))
        elif 'error' in w:
            notes.append('%s: ERROR %s' % (config_name(*c), w['error']))
    lines += ['', 'Timing: ' + '; '.join(notes) + '. Memory: peak during '
              'the operation (its own: above the RSS at its start, which '
              'holds the model, the Adam states and the batch).']
    table = '\n'.join(lines)
    rlines = ['| ratio | config | value (median of per-round ratios) | '
              'ratio of medians | CPU-time ratio | target | verdict |',
              '|---|---|---|---|---|---|---|']
    for r in results['ratios']:
        rlines.append('| %s | %s | %.2f | %.2f | %s | %s %.1f | %s |' % (
            r['ratio'], r['config'], r['value'], r['ratio_of_medians'],
            '-' if r['cpu_time_value'] is None else
            '%.2f' % r['cpu_time_value'],
            '<=' if r['kind'] == 'max' else '>=', r['target'], r['verdict']))
    return table, '\n'.join(rlines)


def plot(results, path):
    import numpy as np
    from visualizations import plt, save_figure
    configs = [tuple(c) for c in results['configs']]
    measure = {(tuple(m['cfg']), m['op']): m for m in results['measurements']}
    ops = results['ops']
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(15, 5.5),
                                 gridspec_kw=dict(width_ratios=[3, 2]))
    width = 0.8 / max(1, len(configs))
    for j, c in enumerate(configs):
        vals = [1000 * measure[(c, op)]['per_image_s']
                if (c, op) in measure and 'error' not in measure[(c, op)]
                else np.nan for op in ops]
        ax.bar(np.arange(len(ops)) + (j - (len(configs) - 1) / 2) * width,
               vals, width, label=config_name(*c))
    ax.set_yscale('log')
    ax.set_ylabel('ms per image (median)')
    ax.set_xticks(np.arange(len(ops)))
    ax.set_xticklabels([o.replace('gain_', 'GAIN_').replace('_', '\n')
                        for o in ops], fontsize=7)
    ax.legend(fontsize=8)
    ax.grid(axis='y', alpha=0.3)
    ax.set_title('per-image time (%s)' % results['device_name'])
    rows = results['ratios']
    y = np.arange(len(rows))
    colors = ['tab:green' if r['verdict'] == 'PASS' else
              'tab:red' if r['verdict'] == 'MISS' else 'tab:gray'
              for r in rows]
    bx.barh(y, [r['value'] for r in rows], color=colors)
    for i, r in enumerate(rows):
        bx.plot([r['target']] * 2, [i - 0.4, i + 0.4], 'k--', linewidth=1)
        bx.text(r['value'], i, ' %.2f' % r['value'], va='center', fontsize=7)
    bx.set_yticks(y)
    bx.set_yticklabels(['%s\n[%s]' % (r['ratio'], r['config'])
                        for r in rows], fontsize=6)
    bx.invert_yaxis()
    bx.set_xlabel('ratio (dashed: target; green PASS, red MISS)')
    bx.set_title('ratios against targets')
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--device', default='-1',
                   help='chainer device: -1 or @numpy (CPU), 0 or @cupy:0 '
                   '(GPU 0); default -1')
    p.add_argument('--widths', type=float, nargs='+', default=None,
                   help='channel-width multipliers (default: see above)')
    p.add_argument('--sizes', type=int, nargs='+', default=None,
                   help='square input sizes in pixels')
    p.add_argument('--batch-sizes', type=int, nargs='+', default=None,
                   help='batch sizes; with any of --widths, --sizes, '
                   '--batch-sizes the configurations are their product '
                   '(an omitted list is 1.0, 320 or 1)')
    p.add_argument('--ops', nargs='+', default=None, choices=OPS,
                   metavar='OP', help='subset of: ' + ', '.join(OPS))
    p.add_argument('--repeat', type=int, default=5,
                   help='timed rounds per configuration, at most (default '
                   '5; fewer under --time-budget)')
    p.add_argument('--time-budget', type=float, default=120.0,
                   help='no further round once one more would pass this '
                   'many timed seconds for a configuration (default 120; '
                   'at least one round is timed)')
    p.add_argument('--warmup', type=int, default=1,
                   help='untimed iterations of each operation first '
                   '(default 1)')
    p.add_argument('--warmup-size', default='auto',
                   help='image size of the warm-up iterations: "same", a '
                   'size, or "auto" (default): 64 on CPU for configurations '
                   'of width >= 0.5 and size > 96 (the Adam state, caches '
                   'and imports that a first step sets up do not depend on '
                   'the image size; a full-width step at 320x320 takes '
                   '10-40 s here), else the timed size')
    p.add_argument('--min-time', type=float, default=0.5,
                   help='within a round, repeat a fast operation until this '
                   'many seconds (its median counts; default 0.5)')
    p.add_argument('--max-inner', type=int, default=20,
                   help='at most this many runs of an operation a round')
    p.add_argument('--quick', action='store_true',
                   help='smoke run: thin model at 48x48, batch 1 and 2, '
                   '2 rounds, min-time 0.1')
    p.add_argument('--no-profile', action='store_true',
                   help='do not profile the operations of missed targets')
    p.add_argument('--profile-ops', nargs='+', default=[], choices=OPS,
                   metavar='OP', help='also profile these operations (each '
                   'configuration), missed target or not')
    p.add_argument('--timeout', type=int, default=1800,
                   help='seconds per worker process (default 1800)')
    p.add_argument('--out', default=os.path.join(ROOT, 'bench'),
                   help='output directory (default bench/)')
    p.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    p.add_argument('--worker-out', default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker:
        result = config_worker(json.loads(args.worker))
        with open(args.worker_out, 'w') as f:
            json.dump(result, f)
        return 0

    from runtime.device import get_device
    from runtime.errors import UsageError
    try:   # fail here, not in every worker
        get_device(args.device)
    except UsageError as e:
        print('bench: %s' % e, file=sys.stderr)
        return 2
    if args.quick:
        args.repeat, args.min_time = 2, 0.1
    gpu = is_gpu(args.device)
    configs = plan(args, gpu)
    ops = [o for o in OPS if o in (args.ops or OPS) and
           (gpu or args.ops or o not in MIXED_OPS)]
    os.makedirs(args.out, exist_ok=True)
    for name in os.listdir(args.out):   # profiles of an earlier run
        if name.startswith('profile_') and name.endswith('.txt'):
            os.remove(os.path.join(args.out, name))
    t_start = time.time()
    info = machine_info(args.device)
    results = dict(
        date=datetime.date.today().isoformat(), device=args.device, gpu=gpu,
        device_name=(info.get('gpu') or 'GPU') if gpu else
        'CPU: %s, %s cores' % (info['cpu'], info['cores']),
        machine=info, configs=[list(c) for c in configs], ops=ops,
        settings=dict(repeat=args.repeat, time_budget=args.time_budget,
                      warmup=args.warmup, warmup_size=args.warmup_size,
                      min_time=args.min_time, max_inner=args.max_inner,
                      n_class=21, labels_per_image='2, 3, 1, 2, 3, 1, ...',
                      lr=1e-5, run_order=RUN_ORDER),
        measurements=[], workers={})
    measure = {}
    for cfg in configs:
        spec = dict(ops=ops, width=cfg[0], size=cfg[1], batch=cfg[2],
                    device=args.device, repeat=args.repeat,
                    time_budget=args.time_budget, warmup=args.warmup,
                    warmup_size=warmup_size(args.warmup_size, cfg, gpu),
                    min_time=args.min_time, max_inner=args.max_inner)
        t0 = time.time()
        w = run_worker(spec, args.timeout)
        results['workers'][config_name(*cfg)] = {
            k: v for k, v in w.items() if k != 'ops'}
        if 'error' in w:
            print('%-18s ERROR %s' % (config_name(*cfg), w['error']),
                  flush=True)
            continue
        for op in ops:
            m = dict(w['ops'][op], cfg=list(cfg))
            measure[(cfg, op)] = m
            results['measurements'].append(m)
            print('%-18s %-28s %10s ms/image  peak RSS %s MiB' % (
                config_name(*cfg), op, fmt_ms(m['per_image_s']),
                '-' if m['rss_peak_mib'] is None else
                '%.0f' % m['rss_peak_mib']), flush=True)
        print('%-18s %d round(s), %.0f s in all' % (
            config_name(*cfg), w['rounds'], time.time() - t0), flush=True)

    # float64 anywhere inside a step: thin model, every op, once.
    dt = run_worker(dict(mode='dtypes', device=args.device, width=0.0625,
                         size=48, batch=3), args.timeout)
    results['dtype_check'] = dt
    results['float64'] = dt.get('float64', {'error': dt.get('error')})
    print('float64 inside a step: %s' % (
        'none' if dt.get('float64') == {} else results['float64']),
        flush=True)

    results['ratios'] = ratio_rows(measure, configs, gpu)
    profiles = {}
    wanted = [(cfg, op) for cfg in configs for op in args.profile_ops
              if (cfg, op) in measure]
    if not args.no_profile:
        wanted += [(tuple(c), o) for r in results['ratios']
                   if r['verdict'] == 'MISS'
                   for c, o in (r['numerator'], r['denominator'])]
    for cfg, op in wanted:
        if (cfg, op) in profiles:
            continue
        path = os.path.join(args.out, 'profile_%s_%s.txt' % (
            op, config_slug(*cfg)))
        spec = dict(ops=[op], profile_op=op, width=cfg[0],
                    size=cfg[1], batch=cfg[2], device=args.device,
                    warmup=args.warmup,
                    warmup_size=warmup_size(args.warmup_size, cfg,
                                            gpu),
                    measured_s=measure[(cfg, op)]['median_s'],
                    profile=path, title='%s, %s (%s)' % (
                        DESCRIPTION[op], config_name(*cfg),
                        results['device_name']))
        m = run_worker(spec, args.timeout)
        profiles[(cfg, op)] = m.get('profile', {'error':
                                                m.get('error')})
        print('profiled %s %s -> %s' % (config_name(*cfg), op, path),
              flush=True)
    results['profiles'] = [dict(cfg=list(c), op=o, **v)
                           for (c, o), v in profiles.items()]
    results['machine']['load_average_end'] = os.getloadavg()
    results['wall_time_s'] = time.time() - t_start

    table, ratios = markdown(results)
    results['markdown'] = dict(table=table, ratios=ratios)
    json_path = os.path.join(args.out, 'results.json')
    write_text(json_path, json.dumps(results, indent=1))
    try:
        plot(results, os.path.join(args.out, 'results.png'))
    except Exception as e:  # the numbers matter more than the figure
        print('figure not written: %s' % e, file=sys.stderr)
    print()
    print('%s, %s; device %s; load average %.1f at the start, %.1f at the '
          'end' % (results['date'], results['device_name'], args.device,
                   info['load_average_start'][0],
                   results['machine']['load_average_end'][0]))
    print()
    print(table)
    print()
    print(ratios)
    print()
    for r in results['profiles']:
        if 'top' in r:
            print('profile %s %s: %s' % (config_name(*r['cfg']), r['op'],
                                         ', '.join('%s %s %.0f%%' % (
                                             t['function'], t['phase'],
                                             100 * t['share'])
                                             for t in r['top'][:3])))
    print('wrote %s (%.0f s)' % (json_path, results['wall_time_s']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
