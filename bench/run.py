#!/usr/bin/env python
"""Benchmark of the GAIN training step against its cost floor
(docs/BENCHMARKS.md): per image, the segmentation, classifier-stage and
GAIN steps and the inference calls, each configuration in a fresh process,
timed in rounds; the ratios between them judged against their targets, the
peak memory of each, and float64 inside a step. Writes <out>/results.json
and <out>/results.png.
"""
import argparse
import concurrent.futures
import datetime
import json
import multiprocessing
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import report  # NOQA: E402
from bench.measure import dtype_check, machine_info, worker  # NOQA: E402
from bench.ops import MIXED_OPS, OPS  # NOQA: E402
from runtime import cli  # NOQA: E402
from runtime.device import get_device  # NOQA: E402
from runtime.errors import UsageError, one_line  # NOQA: E402
from runtime.files import write_text  # NOQA: E402

# (width, size, batch). Batch 8 at full width is GPU-only: on 2 CPU cores
# a round of the 11 operations at batch 1 takes about 5 minutes.
CPU_CONFIGS = [(1.0, 320, 1), (0.0625, 96, 8)]
GPU_CONFIGS = [(1.0, 320, 1), (1.0, 320, 8), (0.0625, 96, 8)]
QUICK_CONFIGS = [(0.0625, 48, 1), (0.0625, 48, 2)]


def config(text):
    try:
        width, size, batch = text.split(',')
        return float(width), int(size), int(batch)
    except ValueError:
        raise argparse.ArgumentTypeError('WIDTH,SIZE,BATCH, got %r' % text)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--device', default='-1',
                   help='chainer device: -1 (CPU) or 0 (GPU 0); default -1')
    p.add_argument('--configs', nargs='+', type=config, metavar='W,S,B',
                   help='width multiplier, square image size, batch size '
                   '(default on CPU: 1,320,1 0.0625,96,8; on GPU also '
                   '1,320,8)')
    p.add_argument('--ops', nargs='+', choices=OPS, metavar='OP',
                   help='a subset of: %s (default: all; the mixed16 ones '
                   'on GPU only)' % ', '.join(OPS))
    p.add_argument('--rounds', type=int, default=5,
                   help='timed rounds per configuration, at most (default 5)')
    p.add_argument('--time-budget', type=float, default=120.0,
                   help='no further round once one more would pass this '
                   'many seconds for a configuration (default 120)')
    p.add_argument('--quick', action='store_true',
                   help='smoke run: thin model at 48x48, batch 1 and 2, '
                   '2 rounds')
    p.add_argument('--out', default=os.path.join(ROOT, 'runs', 'bench'),
                   help='output directory (default runs/bench)')
    return p.parse_args(argv)


def in_process(function, spec):
    """``function(spec)`` in a fresh interpreter; ``{'error': ...}`` if it
    fails."""
    with concurrent.futures.ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context('spawn')) as pool:
        try:
            return pool.submit(function, spec).result()
        except Exception as e:
            return dict(error='%s: %s' % (type(e).__name__, one_line(e)))


def measure_configs(args, results):
    """Each configuration in its own process; ``{(cfg, op): measurement}``
    (also in ``results['measurements']``)."""
    measure = {}
    for cfg in results['configs']:
        name = report.config_name(*cfg)
        w = in_process(worker, dict(
            device=args.device, width=cfg[0], size=cfg[1], batch=cfg[2],
            ops=results['ops'], rounds=args.rounds,
            time_budget=args.time_budget))
        results['workers'][name] = {k: v for k, v in w.items() if k != 'ops'}
        if 'error' in w:
            print('%-18s ERROR %s' % (name, w['error']), flush=True)
            continue
        for op, m in w['ops'].items():
            measure[(tuple(cfg), op)] = m
            results['measurements'].append(dict(m, cfg=cfg))
            print('%-18s %-30s %8s ms/image  peak %.0f MiB' % (
                name, op, report.fmt_ms(m['per_image_s']),
                m['mem_peak_mib']), flush=True)
        print('%-18s %d round(s), %.0f s' % (name, w['rounds'],
                                             sum(w['round_s'])), flush=True)
    return measure


def main():
    args = parse_args()
    gpu = get_device(args.device).xp.__name__ == 'cupy'
    out = os.path.abspath(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError('--out %s is not a directory' % out)
    os.makedirs(out, exist_ok=True)
    if args.quick:
        args.rounds, args.configs = 2, QUICK_CONFIGS
    t_start = time.time()
    info = machine_info(gpu)
    results = dict(
        date=datetime.date.today().isoformat(), device=args.device, gpu=gpu,
        device_name=info.get('gpu') or 'CPU: %s, %s cores' % (
            info['cpu'], info['cores']), machine=info,
        configs=[list(c) for c in args.configs or (
            GPU_CONFIGS if gpu else CPU_CONFIGS)],
        ops=[o for o in OPS if o in (args.ops or OPS) and
             (gpu or args.ops or o not in MIXED_OPS)],
        settings=dict(rounds=args.rounds, time_budget=args.time_budget,
                      n_class=21, labels_per_image='2, 3, 1, 2, 3, 1, ...'),
        measurements=[], workers={})
    measure = measure_configs(args, results)
    dt = in_process(dtype_check, dict(device=args.device, width=0.0625,
                                      size=48, batch=3))
    results['float64'] = dt.get('float64', dt)
    results['ratios'] = report.ratio_rows(
        measure, [tuple(c) for c in results['configs']], gpu)
    info['load_average_end'] = os.getloadavg()
    results['wall_time_s'] = time.time() - t_start
    tables = [report.op_table(results, measure), report.ratio_table(results)]
    write_text(os.path.join(out, 'results.json'),
               json.dumps(dict(results, dtype_check=dt), indent=1))
    try:
        report.plot(results, measure, os.path.join(out, 'results.png'))
    except Exception as e:  # the numbers matter more than the figure
        print('figure not written: %s' % one_line(e), file=sys.stderr)
    print('\n%s, %s; load average %.1f at the start, %.1f at the end\n\n'
          '%s\n\n%s\n\nfloat64 inside a step: %s\nwrote %s (%.0f s)' % (
              results['date'], results['device_name'],
              info['load_average_start'][0], info['load_average_end'][0],
              tables[0], tables[1], results['float64'] or 'none',
              os.path.join(out, 'results.json'), results['wall_time_s']))


if __name__ == '__main__':
    cli.run(main)
