"""The measuring side of the benchmark, run in a fresh process per
configuration (:func:`worker`): the operations on one model, warmed up,
then timed in rounds, with each one's peak memory; float64 inside a step;
the machine."""
import gc
import os
import platform
import statistics
import time

from bench.dtypes import check_step
from bench.ops import OPS, build, erased_images, make_batch, make_model

#: After the first round, a faster operation runs until about this many
#: seconds a round (at most 20 times); the mean of those runs counts.
MIN_TIME = 0.5


def worker(spec):
    """:func:`timed_rounds` of ``spec['ops']`` on a model of
    ``spec['width']`` and a batch of ``spec['batch']`` images of
    ``spec['size']`` pixels squared, on ``spec['device']``."""
    from runtime.device import get_device
    device = get_device(spec['device'])
    gpu = device.xp.__name__ == 'cupy'
    sync = device.xp.cuda.Device().synchronize if gpu else (lambda: None)
    model, shared = make_model(spec['width']).to_device(device), {}
    ops = {n: build(n, model, shared)[0] for n in spec['ops']}
    arrays = make_batch(spec['batch'], spec['size'])
    batch = [device.send(a) for a in arrays]
    # What a first step sets up (Adam state, caches, imports) does not
    # depend on the image size: full width on CPU warms up at 64 x 64.
    small = not gpu and spec['width'] >= 0.5 and spec['size'] > 96
    warm = [device.send(a) for a in make_batch(spec['batch'], 64)] \
        if small else batch
    for run in ops.values():
        run(*warm)
        sync()
    out = timed_rounds(ops, batch, sync, spec, memory_probe(device.xp))
    for n, m in out['ops'].items():
        if n.startswith('gain_'):
            m['erased_images'] = erased_images(n, arrays[2])
    return out


def _proc_status(field):
    """A field of /proc/self/status in MiB (VmRSS: now, VmHWM: peak)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024.0


def memory_probe(xp):
    """``(start, peak)``, called around a run: MiB in use at its start and
    at its peak. On CPU the process's RSS, its peak reset first
    (``/proc/self/clear_refs``, Linux >= 4.0) and the C heap's free memory
    handed back (glibc); on GPU CuPy's pool, emptied first so that its
    total after the run is the run's peak (plus fragmentation)."""
    if xp.__name__ == 'cupy':
        pool = xp.get_default_memory_pool()

        def start():
            pool.free_all_blocks()
            return pool.used_bytes() / 2.0 ** 20
        return start, lambda: pool.total_bytes() / 2.0 ** 20

    def start():
        import ctypes
        gc.collect()
        ctypes.CDLL('libc.so.6').malloc_trim(0)
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return _proc_status('VmRSS')
    return start, lambda: _proc_status('VmHWM')


def timed_rounds(ops, batch, sync, spec, probe):
    """Rounds of every op (in order, reversed every other round) until
    ``spec['rounds']`` or past ``spec['time_budget']`` seconds (at least
    one): per op the wall and CPU seconds of one run in each round, and the
    memory of its run in the first round."""
    names, rec = list(ops), {n: dict(wall_s=[], cpu_s=[]) for n in ops}
    started, round_s = time.perf_counter(), []
    while not round_s or (len(round_s) < spec['rounds'] and
                          time.perf_counter() - started + round_s[-1] <
                          spec['time_budget']):
        t_round = time.perf_counter()
        for n in names if len(round_s) % 2 == 0 else names[::-1]:
            r = rec[n]
            k = min(20, max(1, int(MIN_TIME / r['wall_s'][0]))) \
                if round_s else 1
            if not round_s:
                r['mem_start_mib'] = probe[0]()
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(k):
                ops[n](*batch)
            sync()
            r['wall_s'].append((time.perf_counter() - t0) / k)
            r['cpu_s'].append((time.process_time() - c0) / k)
            if not round_s:
                r['mem_peak_mib'] = probe[1]()
        round_s.append(time.perf_counter() - t_round)
    for n, r in rec.items():
        r.update(op=n, median_s=statistics.median(r['wall_s']),
                 per_image_s=statistics.median(r['wall_s']) / spec['batch'])
    return dict(rounds=len(round_s), round_s=round_s, ops=rec)


def dtype_check(spec):
    """Every op once on a fresh model, then once more under a
    :class:`bench.dtypes.DtypeRecorder`."""
    from runtime.device import get_device
    device = get_device(spec['device'])
    arrays = [device.send(a) for a in make_batch(spec['batch'], spec['size'])]
    result = {}
    for name in OPS:
        run, loss, optimizer = build(
            name, make_model(spec['width']).to_device(device), {})
        run(*arrays)
        result[name] = check_step(lambda: run(*arrays), loss, optimizer)
    return dict(ops=result, float64={k: v['float64'] for k, v in
                                     result.items() if v['float64']})


def machine_info(gpu):
    """The machine as results.json records it."""
    import chainer
    import numpy
    info = dict(platform=platform.platform(), python=platform.python_version(),
                cores=os.cpu_count(), load_average_start=os.getloadavg(),
                chainer=chainer.__version__, numpy=numpy.__version__,
                cpu=platform.processor())
    with open('/proc/cpuinfo') as f:
        names = [line.split(':', 1)[1].strip() for line in f
                 if line.startswith('model name')]
    info['cpu'] = names[0] if names else info['cpu']
    if gpu:
        import cupy
        info['cupy'] = cupy.__version__
        info['gpu'] = cupy.cuda.runtime.getDeviceProperties(
            cupy.cuda.Device().id)['name'].decode()
    return info
