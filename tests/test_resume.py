"""A real training process, interrupted (SIGINT), resumed, killed
(SIGKILL) at a random moment, resumed again, ends with the weights of an
uninterrupted run of the same seed."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import write_voc
from runtime.snapshots import list_snapshots

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITERATIONS = 20
# One BLAS thread: the machine is small and shared.
ENV = dict(os.environ, OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1',
           MKL_NUM_THREADS='1')


def command(data_dir, out):
    return [sys.executable, 'train_fcn.py', '--dataset', 'voc',
            '--data-dir', data_dir, '--out', str(out), '--width', '0.0625',
            '--iterations', str(ITERATIONS), '--batch-size', '1',
            '--val-split', '', '--snapshot-interval', '3', '--seed', '3']


def start(data_dir, out):
    return subprocess.Popen(command(data_dir, out), cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def wait_for_snapshot(proc, out, after, deadline=120):
    """Wait until ``out`` holds a snapshot of an iteration > ``after``."""
    end = time.time() + deadline
    while time.time() < end:
        if any(it > after for it, _ in list_snapshots(str(out))):
            return
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.01)
    proc.kill()
    pytest.fail('no snapshot after iteration %d within %ds' % (after,
                                                              deadline))


def last_iteration(out):
    return max(it for it, _ in list_snapshots(str(out)))


def log_without_times(out):
    return [{k: v for k, v in entry.items() if k != 'elapsed_time'}
            for entry in json.load(open(os.path.join(str(out), 'log')))]


@pytest.mark.slow
def test_interrupted_killed_and_resumed_run_matches_uninterrupted(tmp_path):
    rng = np.random.RandomState(0)
    data_dir = str(tmp_path / 'VOC')
    write_voc(data_dir, {'train': 6}, size=(32, 32))
    ref, out = tmp_path / 'ref', tmp_path / 'out'

    proc = subprocess.run(command(data_dir, ref), cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr

    # SIGINT after the first snapshot: a snapshot of the current iteration,
    # exit 130, one line.
    proc = start(data_dir, out)
    wait_for_snapshot(proc, out, 0)
    time.sleep(rng.uniform(0, 0.3))
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    err = proc.stderr.read()
    stopped_at = last_iteration(out)
    assert ('interrupted: SIGINT at iteration %d; saved %s' % (
        stopped_at, os.path.join(str(out), 'snapshot_iter_%d.npz'
                                 % stopped_at))) in err
    assert 'Traceback' not in err
    assert stopped_at < ITERATIONS

    # Resume; SIGKILL at a random moment after one more snapshot.
    proc = start(data_dir, out)
    wait_for_snapshot(proc, out, stopped_at)
    time.sleep(rng.uniform(0, 0.3))
    proc.kill()
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert 'resuming from' in proc.stderr.read()
    assert not os.path.exists(str(out / 'model.npz')), 'finished too soon'
    killed_at = last_iteration(out)
    assert stopped_at < killed_at < ITERATIONS

    # Resume to the end.
    proc = start(data_dir, out)
    err = proc.communicate(timeout=300)[1]
    assert proc.returncode == 0, err
    assert 'resuming from %s' % os.path.join(
        str(out), 'snapshot_iter_%d.npz' % killed_at) in err

    a, b = np.load(str(ref / 'model.npz')), np.load(str(out / 'model.npz'))
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        if a[k].dtype.kind == 'U':       # the _meta records
            assert b[k] == a[k], k
            continue
        np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-6,
                                   err_msg=k)
    assert log_without_times(out) == log_without_times(ref)
