"""training/extensions/snapshots.py: snapshots, resume, corrupt ones,
another run's snapshot, and signals."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from chainer.serializers import npz

from helpers import (ENV, ROOT, gain_args, poison, run_script, toy_trainer,
                     write_voc)
from runtime.errors import (Interrupted, NonFiniteError, SnapshotError,
                            WriteFailed)
from training.extensions.snapshots import (CorruptSnapshot, Snapshot, Writer,
                                          list_snapshots, read_snapshot)
from training.trainer import run_training as finish


def weights(model):
    return {n: p.array.copy() for n, p in model.namedparams()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7,
                                   err_msg=k)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """Weights after 9 uninterrupted iterations, and a run dir holding the
    snapshots of 6 iterations (3 and 6)."""
    base = tmp_path_factory.mktemp('ref')
    trainer, model = toy_trainer(base / 'full')
    trainer.run()
    trainer6, _ = toy_trainer(base / 'six', iterations=6)
    trainer6.run()
    return weights(model), str(base / 'six')


def test_snapshots_hold_rng_state_and_final_iteration(reference, tmp_path):
    full, six = reference
    assert [it for it, _ in list_snapshots(six)] == [3, 6]
    arrays = read_snapshot(os.path.join(six, 'snapshot_iter_6.npz'))
    assert 'extensions/snapshot/numpy_random/keys' in arrays
    assert int(arrays['updater/iteration']) == 6
    # 10 iterations, interval 4: 4, 8 and the final 10 (n_retains=2).
    trainer, _ = toy_trainer(tmp_path, iterations=10, interval=4)
    trainer.run()
    assert [it for it, _ in list_snapshots(str(tmp_path))] == [8, 10]
    assert not any(n.startswith('.tmp') for n in os.listdir(str(tmp_path)))


def test_resume_continues_identically(reference, tmp_path, capsys):
    full, six = reference
    out = tmp_path / 'run'
    shutil.copytree(six, str(out))
    # Other seed, other init: everything must come from the snapshot.
    trainer, model = toy_trainer(out, seed=123)
    trainer.run()
    assert 'resuming from %s' % os.path.join(str(out), 'snapshot_iter_6.npz') \
        in capsys.readouterr().err
    assert_same_weights(weights(model), full)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_signal_snapshots_and_stops_then_resumes(reference, tmp_path, capsys,
                                                  signum):
    full, _ = reference
    previous = signal.getsignal(signum)
    trainer, model = toy_trainer(tmp_path, toy=dict(signal_at=(5, signum)))
    with pytest.raises(Interrupted) as e:
        trainer.run(show_loop_exception_msg=False)
    assert e.value.exit_status == 128 + signum
    assert 'at iteration 5' in str(e.value)
    assert signal.getsignal(signum) is previous       # handler restored
    assert [it for it, _ in list_snapshots(str(tmp_path))] == [3, 5]
    trainer, model = toy_trainer(tmp_path, seed=7)
    trainer.run()
    assert_same_weights(weights(model), full)


def test_second_sigint_stops_at_once(tmp_path):
    previous = signal.getsignal(signal.SIGINT)
    trainer, _ = toy_trainer(tmp_path,
                             toy=dict(signal_at=(5, signal.SIGINT, 2)))
    with pytest.raises(KeyboardInterrupt):
        trainer.run(show_loop_exception_msg=False)
    assert signal.getsignal(signal.SIGINT) is previous
    assert [it for it, _ in list_snapshots(str(tmp_path))] == [3]


def test_resume_at_or_past_the_end_stops_at_once(reference, tmp_path):
    out = str(tmp_path / 'run')
    shutil.copytree(reference[1], out)
    trainer, model = toy_trainer(out, iterations=4)
    trainer.run()
    assert trainer.updater.iteration == 6
    trainer, model = toy_trainer(out, iterations=6)
    trainer.run()
    assert trainer.updater.iteration == 6


def test_nonfinite_weights_are_never_snapshotted(tmp_path):
    trainer, model = toy_trainer(tmp_path, toy=dict(poison_at=3))
    with pytest.raises(NonFiniteError) as e:
        trainer.run(show_loop_exception_msg=False)
    assert str(e.value) == ('iteration 3: weights hold NaN or inf; training '
                            'stopped, model.npz not written; no snapshot '
                            'was written yet')
    assert list_snapshots(str(tmp_path)) == []


def _flip_member_byte(path):
    with zipfile.ZipFile(path) as z:
        info = [i for i in z.infolist() if i.compress_size > 16][0]
    with open(path, 'r+b') as f:
        f.seek(info.header_offset + 26)
        n, m = np.frombuffer(f.read(4), '<u2')
        offset = info.header_offset + 30 + int(n) + int(m) + \
            info.compress_size // 2
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _corrupt(path, how):
    data = open(path, 'rb').read()
    if how == 'truncated':
        open(path, 'wb').write(data[:len(data) // 2])
    elif how == 'empty':
        open(path, 'wb').close()
    elif how == 'random':
        open(path, 'wb').write(np.random.RandomState(0).bytes(len(data)))
    elif how == 'flipped':
        _flip_member_byte(path)
    elif how == 'nan-weights':
        arrays = dict(np.load(path, allow_pickle=True))
        arrays['updater/model:main/l/W'] = arrays[
            'updater/model:main/l/W'] * np.nan
        with open(path, 'wb') as f:
            np.savez(f, **arrays)
    elif how == 'not-a-snapshot':
        with open(path, 'wb') as f:
            np.savez(f, a=np.zeros(3))


@pytest.mark.parametrize('how', ['truncated', 'empty', 'random', 'flipped',
                                 'nan-weights', 'not-a-snapshot'])
def test_corrupt_snapshot_is_reported_kept_and_previous_used(
        reference, tmp_path, capsys, how):
    full, six = reference
    out = str(tmp_path / 'run')
    shutil.copytree(six, out)
    bad = os.path.join(out, 'snapshot_iter_6.npz')
    _corrupt(bad, how)
    content = open(bad, 'rb').read()
    with pytest.raises(CorruptSnapshot):
        read_snapshot(bad)
    trainer, model = toy_trainer(out, seed=5)
    trainer.run()
    err = capsys.readouterr().err
    assert 'warning: snapshot %s: ' % bad in err
    assert 'resuming from %s' % os.path.join(out, 'snapshot_iter_3.npz') in err
    kept = bad + '.corrupt'
    assert open(kept, 'rb').read() == content          # nothing deleted
    assert_same_weights(weights(model), full)


def test_all_snapshots_corrupt_start_over(reference, tmp_path, capsys):
    out = str(tmp_path / 'run')
    shutil.copytree(reference[1], out)
    for _, path in list_snapshots(out):
        _corrupt(path, 'truncated')
    trainer, model = toy_trainer(out)
    trainer.run()
    err = capsys.readouterr().err
    assert 'no usable snapshot' in err and 'starting from scratch' in err
    assert sorted(n for n in os.listdir(out) if n.endswith('.corrupt')) == [
        'snapshot_iter_3.npz.corrupt', 'snapshot_iter_6.npz.corrupt']
    assert_same_weights(weights(model), reference[0])


def test_explicit_resume_of_bad_or_missing_file_is_an_error(reference,
                                                            tmp_path):
    out = str(tmp_path / 'run')
    shutil.copytree(reference[1], out)
    bad = os.path.join(out, 'snapshot_iter_6.npz')
    _corrupt(bad, 'truncated')
    with pytest.raises(SnapshotError, match='--resume .*truncated'):
        toy_trainer(out, resume=bad)
    assert os.path.exists(bad)                     # not renamed either
    with pytest.raises(SnapshotError, match='no usable snapshot'):
        toy_trainer(tmp_path / 'empty', resume='latest')
    missing = str(tmp_path / 'nope.npz')
    with pytest.raises(SnapshotError) as e:
        toy_trainer(out, resume=missing)
    assert str(e.value) == '--resume %s: no such file' % missing


def test_explicit_resume_of_older_snapshot_sets_newer_aside(reference,
                                                            tmp_path):
    full, six = reference
    out = str(tmp_path / 'run')
    shutil.copytree(six, out)
    trainer, model = toy_trainer(out, resume=os.path.join(
        out, 'snapshot_iter_3.npz'))
    trainer.run()
    assert os.path.exists(os.path.join(out, 'snapshot_iter_6.npz.superseded'))
    assert_same_weights(weights(model), full)


def test_snapshot_of_another_architecture_does_not_fit(reference, tmp_path):
    out = str(tmp_path / 'run')
    shutil.copytree(reference[1], out)
    with pytest.raises(SnapshotError, match='does not fit this run'):
        toy_trainer(out, toy=dict(n_in=5))


def test_force_ignores_snapshots(reference, tmp_path, capsys):
    out = str(tmp_path / 'run')
    shutil.copytree(reference[1], out)
    trainer, _ = toy_trainer(out, iterations=2, force=True)
    trainer.run()
    assert 'resuming' not in capsys.readouterr().err


def test_rng_state_round_trip():
    ext = Snapshot(10)
    np.random.seed(3)
    np.random.rand(5)
    np.random.randn()                 # a cached gaussian too
    saved = npz.DictionarySerializer()
    ext.serialize(saved)
    expected = np.random.rand(4), np.random.randn(3)
    np.random.seed(99)
    ext.serialize(npz.NpzDeserializer(saved.target))
    got = np.random.rand(4), np.random.randn(3)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)


ITERATIONS = 20


#: Runs a training script (argv[3:]) that sends itself the signal argv[1]
#: from an extension at iteration argv[2], after every other extension of
#: that iteration: a kill at a chosen point, whatever the machine's speed.
SIGNAL_AT = """
import os, runpy, signal, sys
import chainer.training
from chainer.training import make_extension, triggers
sig, at = signal.Signals[sys.argv[1]], int(sys.argv[2])
run = chainer.training.Trainer.run
def run_and_signal(self, *args, **kwargs):
    self.extend(make_extension(
        trigger=triggers.ManualScheduleTrigger([at], 'iteration'),
        priority=-1000)(lambda trainer: os.kill(os.getpid(), sig)),
        name='signal_at')
    return run(self, *args, **kwargs)
chainer.training.Trainer.run = run_and_signal
sys.argv = sys.argv[3:]
sys.path.insert(0, os.getcwd())
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def command(data_dir, out, signal_at=None):
    """train_fcn.py, 20 iterations, a snapshot every 3; ``signal_at``:
    ``(signal name, iteration)``."""
    wrapper = ['-c', SIGNAL_AT, *map(str, signal_at)] if signal_at else []
    return [sys.executable, *wrapper, 'train_fcn.py', '--dataset', 'voc',
            '--data-dir', data_dir, '--out', str(out), '--width', '0.0625',
            '--iterations', str(ITERATIONS), '--batch-size', '1',
            '--val-split', '', '--snapshot-interval', '3', '--seed', '3']


def run(data_dir, out, signal_at=None):
    return subprocess.run(command(data_dir, out, signal_at), cwd=ROOT,
                          env=ENV, capture_output=True, text=True,
                          timeout=300)


def last_iteration(out):
    return max(it for it, _ in list_snapshots(str(out)))


def log_without_times(out):
    return [{k: v for k, v in entry.items() if k != 'elapsed_time'}
            for entry in json.load(open(os.path.join(str(out), 'log')))]


@pytest.mark.slow
def test_interrupted_killed_and_resumed_run_matches_uninterrupted(tmp_path):
    """SIGINT after iteration 5's extensions (the run stops with a snapshot
    at the end of iteration 6), then SIGKILL at iteration 11 of the resumed
    run (its last snapshot: 9), then a resume to the end: the weights and
    the log equal an uninterrupted run's, bit for bit (one machine, one
    BLAS thread)."""
    data_dir = str(tmp_path / 'VOC')
    write_voc(data_dir, {'train': 6}, size=(32, 32))
    ref, out = tmp_path / 'ref', tmp_path / 'out'
    proc = run(data_dir, ref)
    assert proc.returncode == 0, proc.stderr

    # SIGINT: a snapshot at the end of the next iteration, exit 130, one
    # line.
    proc = run(data_dir, out, ('SIGINT', 5))
    assert proc.returncode == 130, proc.stderr
    assert ('interrupted: SIGINT at iteration 6; saved %s' % os.path.join(
        str(out), 'snapshot_iter_6.npz')) in proc.stderr
    assert 'Traceback' not in proc.stderr
    assert last_iteration(out) == 6

    # Resume; SIGKILL between two snapshots: nothing written after 9.
    proc = run(data_dir, out, ('SIGKILL', 11))
    assert proc.returncode == -signal.SIGKILL
    assert 'resuming from %s' % os.path.join(
        str(out), 'snapshot_iter_6.npz') in proc.stderr
    assert not os.path.exists(str(out / 'model.npz'))
    assert last_iteration(out) == 9

    # Resume to the end.
    proc = run(data_dir, out)
    assert proc.returncode == 0, proc.stderr
    assert 'resuming from %s' % os.path.join(
        str(out), 'snapshot_iter_9.npz') in proc.stderr

    a, b = np.load(str(ref / 'model.npz')), np.load(str(out / 'model.npz'))
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        np.testing.assert_array_equal(b[k], a[k], err_msg=k)
    assert log_without_times(out) == log_without_times(ref)


def test_the_payload_is_live(tmp_path):
    """The payload of the tests below runs when unpickled."""
    path, marker = str(tmp_path / 'p.npz'), str(tmp_path / 'marker')
    with open(path, 'wb') as f:
        np.savez(f, a=np.zeros(1))
    poison(path, marker)
    with np.load(path, allow_pickle=True) as f:
        f['extensions/snapshot/payload']
    assert os.path.exists(marker)


def test_a_pickled_snapshot_never_runs_and_is_set_aside(tmp_path, capsys):
    out, marker = tmp_path / 'run', str(tmp_path / 'marker')
    toy_trainer(out, iterations=6)[0].run()
    poison(str(out / 'snapshot_iter_6.npz'), marker)
    trainer, _ = toy_trainer(out, iterations=6)
    trainer.run()
    err = capsys.readouterr().err
    assert not os.path.exists(marker)
    assert 'holds pickled data (object array extensions/snapshot/payload)' \
        in err
    assert 'resuming from %s' % (out / 'snapshot_iter_3.npz') in err
    assert os.path.exists(str(out / 'snapshot_iter_6.npz.corrupt'))


def test_resume_of_a_pickled_snapshot_is_a_one_line_error(tmp_path):
    out, marker = tmp_path / 'run', str(tmp_path / 'marker')
    toy_trainer(out, iterations=3)[0].run()
    path = str(out / 'snapshot_iter_3.npz')
    poison(path, marker)
    with pytest.raises(SnapshotError) as e:
        toy_trainer(tmp_path / 'other', resume=path)
    assert not os.path.exists(marker)
    assert 'holds pickled data' in str(e.value) and '\n' not in str(e.value)


def test_snapshots_are_never_written_with_pickled_data(tmp_path):
    with pytest.raises(SnapshotError, match='updater/x is not a plain'):
        Writer()('snapshot_iter_1.npz', str(tmp_path), {
            'updater/x': np.asarray(None), 'updater/iteration': np.asarray(1)})
    assert os.listdir(str(tmp_path)) == []


def test_snapshots_of_a_gain_run_hold_only_plain_arrays(files, tmp_path,
                                                        monkeypatch, capsys):
    """Every state chainer serializes for our trainer (RNG states,
    iterator, logs, plots, bad-sample counts) reads back without pickle."""
    out = tmp_path / 'gain'
    code, err = run_script('train_GAIN', gain_args(files, out, '--skip-bad'),
                           monkeypatch, capsys)
    assert code == 0, err
    for _, path in list_snapshots(str(out)):
        with np.load(path, allow_pickle=False) as f:
            kinds = {f[k].dtype.kind for k in f.files}
        assert kinds <= set('biufU'), kinds


def test_a_full_disk_stops_training_and_keeps_older_snapshots(
        tmp_path, monkeypatch):
    from training.extensions import snapshots
    real_savez = np.savez

    def savez(f, **arrays):
        if int(arrays['updater/iteration']) == 6:
            f.write(b'partial')
            raise OSError(errno.ENOSPC, 'No space left on device')
        real_savez(f, **arrays)
    monkeypatch.setattr(snapshots.np, 'savez', savez)
    trainer, model = toy_trainer(tmp_path, iterations=9)
    with pytest.raises(WriteFailed) as e:
        finish(trainer, model, str(tmp_path))
    message = str(e.value)
    assert 'No space left on device' in message and '\n' not in message
    assert ('the snapshots written before are kept (newest: %s)'
            % (tmp_path / 'snapshot_iter_3.npz')) in message
    assert list_snapshots(str(tmp_path)) == [
        (3, str(tmp_path / 'snapshot_iter_3.npz'))]
    assert not [n for n in os.listdir(str(tmp_path)) if n.startswith('.tmp')]
    read_snapshot(str(tmp_path / 'snapshot_iter_3.npz'))
