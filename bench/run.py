#!/usr/bin/env python
"""Benchmark of the GAIN training step against its cost floor.

Measures, side by side in one run, the per-image time of a plain FCN8s
segmentation step, a classifier-stage step, a GAIN step of each am_mode and
cam_grad, Grad-CAM inference, a classify forward and an evaluation forward;
the machine-independent ratios between them against their targets
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

Writes ``<out>/results.json`` and ``<out>/results.png`` (``--out``, default
runs/bench) and prints markdown tables. Defaults: on CPU, width 1.0 at
320x320 batch 1 (a batch of 8 at full width would take over 5 minutes per
round of 11 operations on 2 cores) and the demo's thin model (width
0.0625, 96x96, batch 8); on GPU also width 1.0 at 320x320 batch 8.
"""
import argparse
import datetime
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.measure import (RUN_ORDER, config_worker, is_gpu,  # NOQA: E402
                           machine_info)
from bench.ops import DESCRIPTION, MIXED_OPS, OPS  # NOQA: E402
from bench.report import (config_name, config_slug, fmt_ms,  # NOQA: E402
                          markdown, plot, ratio_rows, summary)
from runtime import cli  # NOQA: E402
from runtime.device import get_device  # NOQA: E402
from runtime.errors import UsageError  # NOQA: E402
from runtime.files import write_text  # NOQA: E402

CPU_CONFIGS = [(1.0, 320, 1), (0.0625, 96, 8)]
GPU_CONFIGS = [(1.0, 320, 1), (1.0, 320, 8), (0.0625, 96, 8)]
QUICK_CONFIGS = [(0.0625, 48, 1), (0.0625, 48, 2)]
DEFAULT_OUT = os.path.join(ROOT, 'runs', 'bench')


def parse_args(argv=None):
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
    p.add_argument('--out', default=DEFAULT_OUT,
                   help='output directory (default runs/bench)')
    p.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    p.add_argument('--worker-out', default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


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


def run_worker(spec, timeout):
    """``spec`` in a fresh interpreter; its dict, or ``{'error': ...}``."""
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


def prepare_out(out):
    """Create ``out``; remove the profiles of an earlier run in it."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError('--out %s is not a directory' % out)
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):
        if name.startswith('profile_') and name.endswith('.txt'):
            os.remove(os.path.join(out, name))


def new_results(args, configs, ops, gpu):
    """The record of this run before any measurement: date, machine,
    configurations, operations and settings."""
    info = machine_info(args.device)
    return dict(
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


def measure_configs(args, configs, ops, gpu, results):
    """Each configuration in its own worker; fills ``results``'
    measurements and workers and returns ``{(cfg, op): measurement}``."""
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
    return measure


def check_dtypes(args, results):
    """float64 anywhere inside a step: thin model, every op, once."""
    dt = run_worker(dict(mode='dtypes', device=args.device, width=0.0625,
                         size=48, batch=3), args.timeout)
    results['dtype_check'] = dt
    results['float64'] = dt.get('float64', {'error': dt.get('error')})
    print('float64 inside a step: %s' % (
        'none' if dt.get('float64') == {} else results['float64']),
        flush=True)


def profile_ops(args, out, configs, measure, results, gpu):
    """The ``--profile-ops`` and, unless ``--no-profile``, both operations
    of each missed target, each profiled in its own worker into
    ``out/profile_<op>_<config>.txt``; their summaries."""
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
        path = os.path.join(out, 'profile_%s_%s.txt' % (
            op, config_slug(*cfg)))
        spec = dict(ops=[op], profile_op=op, width=cfg[0],
                    size=cfg[1], batch=cfg[2], device=args.device,
                    warmup=args.warmup,
                    warmup_size=warmup_size(args.warmup_size, cfg, gpu),
                    measured_s=measure[(cfg, op)]['median_s'],
                    profile=path, title='%s, %s (%s)' % (
                        DESCRIPTION[op], config_name(*cfg),
                        results['device_name']))
        m = run_worker(spec, args.timeout)
        profiles[(cfg, op)] = m.get('profile', {'error': m.get('error')})
        print('profiled %s %s -> %s' % (config_name(*cfg), op, path),
              flush=True)
    return [dict(cfg=list(c), op=o, **v) for (c, o), v in profiles.items()]


def main():
    args = parse_args()
    if args.worker:
        result = config_worker(json.loads(args.worker))
        with open(args.worker_out, 'w') as f:
            json.dump(result, f)
        return
    get_device(args.device)   # fail here, not in every worker
    if args.quick:
        args.repeat, args.min_time = 2, 0.1
    gpu = is_gpu(args.device)
    configs = plan(args, gpu)
    ops = [o for o in OPS if o in (args.ops or OPS) and
           (gpu or args.ops or o not in MIXED_OPS)]
    out = os.path.abspath(args.out)
    prepare_out(out)
    t_start = time.time()
    results = new_results(args, configs, ops, gpu)
    measure = measure_configs(args, configs, ops, gpu, results)
    check_dtypes(args, results)
    results['ratios'] = ratio_rows(measure, configs, gpu)
    results['profiles'] = profile_ops(args, out, configs, measure, results,
                                      gpu)
    results['machine']['load_average_end'] = os.getloadavg()
    results['wall_time_s'] = time.time() - t_start
    table, ratios = markdown(results)
    results['markdown'] = dict(table=table, ratios=ratios)
    json_path = os.path.join(out, 'results.json')
    write_text(json_path, json.dumps(results, indent=1))
    try:
        plot(results, os.path.join(out, 'results.png'))
    except Exception as e:  # the numbers matter more than the figure
        print('figure not written: %s' % e, file=sys.stderr)
    print(summary(results))
    print('wrote %s (%.0f s)' % (json_path, results['wall_time_s']))


if __name__ == '__main__':
    cli.run(main)
