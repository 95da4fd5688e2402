"""The measuring side of the benchmark, run in a worker process: one
configuration's operations warmed up and timed in rounds, their peak
memory (host RSS; on GPU the CuPy pool), the dtypes inside a step, the
profile of one operation, and the machine they ran on."""
import os
import platform
import resource
import statistics
import time

from bench.dtypes import check_step
from bench.ops import OPS, build, make_model
from bench.random_batch import make_batch

# Timing order of a round (reversed every other round): the two sides of
# each ratio of bench.report.RATIOS are neighbours.
RUN_ORDER = ['seg_step_mixed16', 'seg_step', 'gain_joint_activations',
             'gain_joint_activations_mixed16', 'gain_joint_full',
             'gain_joint_mask-only', 'gain_per-class_mask-only',
             'gain_per-class_activations', 'gain_per-class_full',
             'cls_step', 'classify', 'grad_cam', 'evaluate']


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
    """Every op of ``spec['ops']`` on one model: warm-up, then rounds (see
    :func:`timed_rounds`); with ``spec['profile']`` one profiled run of
    ``spec['profile_op']`` instead, with ``mode='dtypes'`` see
    :func:`dtype_worker`."""
    from runtime.device import get_device
    device = get_device(spec['device'])
    if spec.get('mode') == 'dtypes':
        return dtype_worker(spec, device)
    sync = _sync_function(device)
    ops = warmed_up_ops(spec, device, sync)
    if spec.get('profile'):
        op = ops[spec['profile_op']]
        return dict(spec, profile=profile_op(
            op, sync, spec['measured_s'], spec['profile'], spec['title']))
    out = timed_rounds(ops, spec, sync)
    if device.xp.__name__ == 'cupy':
        out.update(gpu_pool_peaks(ops, out['ops'], sync))
    if not out['peak_rss_reset']:
        out['process_peak_rss_mib'] = _maxrss_mib()
    return out


def warmed_up_ops(spec, device, sync):
    """``{name: Op}`` of ``spec['ops']`` in :data:`RUN_ORDER`, on one model
    and one batch, each run ``spec['warmup']`` times first (on images of
    ``spec['warmup_size']`` when that differs, sharing the Op's optimizer)."""
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
    return ops


def timed_rounds(ops, spec, sync):
    """Rounds of every op of ``ops`` (in their order, reversed every other
    round) until ``spec['repeat']`` rounds or ``spec['time_budget']``
    seconds; in the first round each op's RSS at its start and its peak.
    Returns ``spec`` with the rounds and ``ops``: per op its wall and CPU
    time per round, their medians and the per-image median."""
    names = list(ops)
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
    return out


def gpu_pool_peaks(ops, measured, sync):
    """One more, untimed run of each op under a sampling hook: its CuPy
    pool use at the start and at the peak go into ``measured[name]``;
    returns the pool's total."""
    import cupy
    pool = cupy.get_default_memory_pool()
    for n in ops:
        sync()
        before = pool.used_bytes()
        peak = make_pool_peak()
        with peak:
            ops[n].run()
            sync()
        measured[n].update(gpu_used_before_mib=before / 2.0 ** 20,
                           gpu_used_peak_mib=peak.peak / 2.0 ** 20)
    return dict(gpu_pool_total_mib=pool.total_bytes() / 2.0 ** 20)


def dtype_worker(spec, device):
    """Every op once, then once more under a dtype recorder (thin model)."""
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


def machine_info(device_spec):
    """The machine as results.json records it: platform, CPU, library
    versions, the GPU's name and the load average at the start."""
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


def is_gpu(spec):
    """Whether the chainer device ``spec`` (``--device``) is a GPU."""
    spec = str(spec)
    if spec.startswith('@cupy'):
        return True
    try:
        return int(spec) >= 0
    except ValueError:
        return False

