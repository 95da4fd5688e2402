"""training/extensions/guards.py: non-finite losses, and --skip-bad."""
import os

import chainer
import numpy as np
import pytest
from chainer.serializers import npz

from datasets import DatasetError
from helpers import (break_voc, error_line, fcn_batch4_args, run_script,
                     toy_trainer, voc_copy)
from runtime.errors import NonFiniteError
from training.extensions.guards import BadSampleCount, SkipBadSamples
from training.extensions.snapshots import list_snapshots, read_snapshot
from training.trainer import run_training as finish


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


def test_skip_bad_skips_warns_and_logs(files, tmp_path, monkeypatch, capsys):
    root = voc_copy(files, tmp_path)
    jpg = break_voc(root, 'random-jpeg')
    break_voc(root, 'missing-image')
    out = tmp_path / 'out'
    code, err = run_script('train_fcn', fcn_batch4_args(
        root, out, '--skip-bad', '--iterations', 10, '--batch-size', 1),
        monkeypatch, capsys)
    assert code == 0, err
    assert 'skipping 1 of 5 images without their files' in err
    assert 'warning: skipping a bad train sample' in err and jpg in err
    import json
    log = json.load(open(str(out / 'log')))
    assert log[-1]['bad_samples'] == 2
    assert os.path.exists(str(out / 'model.npz'))


def test_gain_nan_loss_names_the_terms_and_keeps_the_last_snapshot(
        files, tmp_path, monkeypatch, capsys):
    out = tmp_path / 'gain'
    code, err = run_script('train_GAIN', [
        '--dataset', 'voc', '--data-dir', files['voc'], '--modelfile',
        files['good'], '--out', out, '--iterations', 4, '--batch-size', 2,
        '--val-split', '', '--snapshot-interval', 1, '--lr', 1e8],
        monkeypatch, capsys)
    line = error_line(err)
    assert code == 3
    assert line.startswith('error: iteration 2: non-finite loss main/am, '
                           'main/cl, main/loss, main/seg (')
    assert 'main/ext=0' in line and 'model.npz not written' in line
    snapshot = str(out / 'snapshot_iter_1.npz')
    assert 'last good snapshot: %s (iteration 1)' % snapshot in line
    read_snapshot(snapshot)                     # readable, finite weights
    assert sorted(os.listdir(str(out))) == [
        'config.json', 'ext_images.txt', 'snapshot_iter_1.npz', 'tensorboard']
