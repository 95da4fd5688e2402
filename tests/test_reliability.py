"""Snapshots, resume, corrupt snapshots, non-finite losses and signals, on
a toy trainer built by ``training.trainer.build_trainer`` (fast)."""
import os
import shutil
import signal
import zipfile

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
import pytest
from chainer.iterators import SerialIterator
from chainer.serializers import npz
from chainer.training import StandardUpdater

from datasets import DatasetError
from runtime.errors import Interrupted, NonFiniteError, SnapshotError
from runtime.guards import BadSampleCount, SkipBadSamples
from runtime.snapshots import (CorruptSnapshot, Snapshot, list_snapshots,
                                read_snapshot)
from training.trainer import build_trainer, make_optimizer
from training.trainer import run_training as finish


class Toy(chainer.Chain):
    """A linear layer with dropout (numpy's global RNG on CPU), reporting
    GAIN-like terms; ``bad_at``: the call whose ``am`` term is NaN (its
    gradient makes the weights NaN too); ``signal_at``: ``(call, signal,
    times)``, the call that sends ``signal`` ``times`` to this process;
    ``poison_at``: the call that makes a bias infinite behind a finite
    reported loss."""

    n_class, width, head_trained_by = 2, 1.0, []

    def __init__(self, n_in=3, bad_at=None, signal_at=None, poison_at=None):
        super().__init__()
        self.bad_at, self.signal_at, self.poison_at = (bad_at, signal_at,
                                                       poison_at)
        self.calls = 0
        with self.init_scope():
            self.l = L.Linear(n_in, 2)

    def forward(self, x, t):
        self.calls += 1
        if self.signal_at and self.calls == self.signal_at[0]:
            call, signum, times = (tuple(self.signal_at) + (1,))[:3]
            for _ in range(times):
                os.kill(os.getpid(), signum)
        if self.calls == self.poison_at:
            self.l.b.array[0] = np.inf
            chainer.report({'loss': 1.0}, self)
            return F.sum(self.l.W) * np.float32(0)
        y = F.dropout(self.l(x), 0.5)
        cl = F.mean_squared_error(y, t)
        am = F.sum(y) * (np.float32(np.nan) if self.calls == self.bad_at
                         else np.float32(0))
        loss = cl + am
        chainer.report({'cl': cl, 'am': am, 'loss': loss}, self)
        return loss


def toy_trainer(out, iterations=9, interval=3, seed=0, toy=None, **kw):
    """A trainer of ``Toy(**toy)`` seeded by ``seed``."""
    np.random.seed(seed)
    model = Toy(**(toy or {}))
    rng = np.random.RandomState(1)
    data = [(rng.randn(3).astype(np.float32), rng.randn(2).astype(np.float32))
            for _ in range(10)]
    updater = StandardUpdater(SerialIterator(data, 4),
                              make_optimizer(model, 0.05))
    trainer = build_trainer(updater, (iterations, 'iteration'), str(out),
                            ['main/loss'], {}, log_interval=5,
                            snapshot_interval=interval, **kw)
    return trainer, model


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
    assert not any(n.startswith('tmp') for n in os.listdir(str(tmp_path)))


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


def test_nan_loss_stops_naming_iteration_and_term(tmp_path):
    trainer, model = toy_trainer(tmp_path, iterations=12,
                                 toy=dict(bad_at=7))
    with pytest.raises(NonFiniteError) as e:
        finish(trainer, model, str(tmp_path))
    message = str(e.value)
    assert 'iteration 7' in message and 'main/am' in message
    assert 'main/cl' not in message.split('(')[0]        # cl was finite
    assert 'snapshot_iter_6.npz' in message
    assert '\n' not in message
    assert not os.path.exists(str(tmp_path / 'model.npz'))
    assert [it for it, _ in list_snapshots(str(tmp_path))] == [3, 6]
    assert nonfinite_free(read_snapshot(str(tmp_path / 'snapshot_iter_6.npz')))
    # A rerun (here without the NaN) resumes from the last good snapshot.
    trainer, model = toy_trainer(tmp_path, iterations=12)
    finish(trainer, model, str(tmp_path))
    assert os.path.exists(str(tmp_path / 'model.npz'))


def nonfinite_free(arrays):
    return all(np.isfinite(v).all() for k, v in arrays.items()
               if k.startswith('updater/model:'))


def test_nonfinite_weights_are_never_snapshotted(tmp_path):
    trainer, model = toy_trainer(tmp_path, toy=dict(poison_at=3))
    with pytest.raises(NonFiniteError) as e:
        trainer.run(show_loop_exception_msg=False)
    assert 'snapshot of iteration 3 not written' in str(e.value)
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
    assert 'warning: snapshot %s is ' % bad in err
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
    trainer, _ = toy_trainer(out, resume=bad)
    with pytest.raises(SnapshotError, match='--resume .*truncated'):
        trainer.run(show_loop_exception_msg=False)
    assert os.path.exists(bad)                     # not renamed either
    trainer, _ = toy_trainer(tmp_path / 'empty', resume='latest')
    with pytest.raises(SnapshotError, match='no usable snapshot'):
        trainer.run(show_loop_exception_msg=False)
    trainer, _ = toy_trainer(out, resume=str(tmp_path / 'nope.npz'))
    with pytest.raises(SnapshotError, match='no such snapshot'):
        trainer.run(show_loop_exception_msg=False)


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
    trainer, _ = toy_trainer(out, toy=dict(n_in=5))
    with pytest.raises(SnapshotError, match='does not fit this run'):
        trainer.run(show_loop_exception_msg=False)


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


class Flaky(chainer.dataset.DatasetMixin):
    n_class = 4

    def __init__(self, bad):
        self.bad = set(bad)

    def __len__(self):
        return 5

    def get_example(self, i):
        if i in self.bad:
            raise DatasetError('file_%d.jpg: not a readable image' % i)
        return i


def test_skip_bad_samples_substitutes_warns_and_counts(capsys):
    data = SkipBadSamples(Flaky({1, 2}))
    assert [data[i] for i in range(5)] == [0, 3, 3, 3, 4]
    assert data.n_bad == 2 and data.n_class == 4
    err = capsys.readouterr().err
    assert err.count('warning: skipping a bad train sample') == 2
    assert 'file_1.jpg' in err and 'file_2.jpg' in err
    # The count survives a resume.
    count = BadSampleCount([data])
    saved = npz.DictionarySerializer()
    count.serialize(saved)
    fresh = SkipBadSamples(Flaky({1, 2}))
    BadSampleCount([fresh]).serialize(npz.NpzDeserializer(saved.target))
    assert fresh.n_bad == 2
    # ... and a snapshot taken without --skip-bad still loads.
    BadSampleCount([fresh]).serialize(npz.NpzDeserializer({}))
    with pytest.raises(DatasetError, match='every one of the 5'):
        SkipBadSamples(Flaky(range(5)))[0]
