"""training/schedules.py: learning-rate schedules, also across a resume."""
import json
import math
import os

import chainer
import numpy as np
import pytest

from helpers import error_line, run_script


LR, STEP, GAMMA, POWER = 1e-3, 3, 0.5, 0.9


def expected_lr(schedule, update, total):
    """The rate of update ``update`` (1-based) of a run whose poly and
    cosine schedules span ``total`` updates."""
    t = update - 1                     # the schedule's steps before it
    return {'constant': LR,
            'poly': LR * (1 - t / total) ** POWER,
            'step': LR * GAMMA ** (t // STEP),
            'cosine': LR * (1 + math.cos(math.pi * t / total)) / 2}[schedule]


@pytest.fixture
def used_lrs(monkeypatch):
    """The ``alpha`` of every Adam update, in order."""
    seen = []
    update = chainer.optimizers.Adam.update

    def recording(self, *args, **kwargs):
        seen.append(self.alpha)
        return update(self, *args, **kwargs)
    monkeypatch.setattr(chainer.optimizers.Adam, 'update', recording)
    return seen


def fcn(voc, out, iterations, *more):
    return ['--dataset', 'voc', '--data-dir', voc, '--out', out,
            '--width', 0.0625, '--batch-size', 1, '--val-split', '',
            '--seed', 3, '--lr', LR, '--lr-step', STEP, '--lr-gamma', GAMMA,
            '--lr-power', POWER, '--weight-decay', 0.01, '--iterations',
            iterations] + list(more)


def weights(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files if not k.startswith('_meta/')}


@pytest.mark.slow
@pytest.mark.parametrize('schedule', ['poly', 'step', 'cosine'])
def test_resumed_half_way_equals_uninterrupted(schedule, voc, tmp_path,
                                               monkeypatch, capsys, used_lrs):
    """4 updates, then ``--resume`` to 8: every update's rate and the final
    weights equal those of one run of 8, and follow the formula."""
    n = 4
    ref, out = str(tmp_path / 'ref'), str(tmp_path / 'out')
    code, err = run_script('train_fcn', fcn(voc, ref, 2 * n, '--lr-schedule',
                                            schedule), monkeypatch, capsys)
    assert code == 0, err
    uninterrupted = list(used_lrs)
    del used_lrs[:]
    length = (['--schedule-iterations', 2 * n]
              if schedule in ('poly', 'cosine') else [])
    for iterations, more in ((n, []), (2 * n, ['--resume'])):
        code, err = run_script('train_fcn', fcn(
            voc, out, iterations, '--lr-schedule', schedule,
            *(length + more)), monkeypatch, capsys)
        assert code == 0, err
    assert 'resuming from' in err
    assert used_lrs == uninterrupted
    np.testing.assert_allclose(
        uninterrupted, [expected_lr(schedule, i, 2 * n)
                        for i in range(1, 2 * n + 1)], rtol=1e-12)
    a, b = weights(ref + '/model.npz'), weights(out + '/model.npz')
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    config = json.load(open(os.path.join(out, 'config.json')))
    assert config['lr_schedule'] == schedule
    assert config['weight_decay'] == 0.01
    assert config['schedule_iterations'] == (2 * n if length else None)


@pytest.mark.slow
def test_resume_with_another_decay_length_is_refused(voc, tmp_path,
                                                     monkeypatch, capsys):
    """The poly length defaults to the run's: a resume for longer that
    would change it names the flag and its recorded value."""
    out = str(tmp_path / 'out')
    code, err = run_script('train_fcn', fcn(voc, out, 2, '--lr-schedule',
                                            'poly'), monkeypatch, capsys)
    assert code == 0, err
    code, err = run_script('train_fcn', fcn(voc, out, 4, '--lr-schedule',
                                            'poly', '--resume'),
                           monkeypatch, capsys)
    assert code == 2
    assert '--schedule-iterations 4 (was 2)' in error_line(err)


def test_epochs_set_the_decay_length(voc, tmp_path, monkeypatch, capsys,
                                     used_lrs):
    """``--epochs 1.5`` over 4 images at batch 2: 3 updates, cosine over
    3."""
    out = str(tmp_path / 'out')
    argv = fcn(voc, out, 1, '--lr-schedule', 'cosine', '--batch-size', 2)
    at = argv.index('--iterations')
    argv[at:at + 2] = ['--epochs', 1.5]
    code, err = run_script('train_fcn', argv, monkeypatch, capsys)
    assert code == 0, err
    np.testing.assert_allclose(used_lrs, [expected_lr('cosine', i, 3)
                                          for i in (1, 2, 3)], rtol=1e-12)
    assert json.load(open(os.path.join(out, 'config.json')))[
        'schedule_iterations'] == 3


@pytest.mark.parametrize('flags, message', [
    (['--lr-schedule', 'linear'], "invalid choice: 'linear'"),
    (['--lr-power', 'nan'], '--lr-power must be a finite number > 0'),
    (['--lr-power', '0'], '--lr-power must be a finite number > 0'),
    (['--lr-gamma', '1.5'], '--lr-gamma must be in (0, 1]'),
    (['--lr-gamma', '0'], '--lr-gamma must be in (0, 1]'),
    (['--lr-step', '0'], '--lr-step must be > 0'),
    (['--schedule-iterations', '10'],
     '--schedule-iterations applies to --lr-schedule poly or cosine only'),
    (['--lr-schedule', 'poly', '--schedule-iterations', '-1'],
     '--schedule-iterations must be > 0'),
    (['--val-interval', '0'], '--val-interval must be > 0'),
    (['--weight-decay', 'inf'], '--weight-decay must be a finite number'),
])
@pytest.mark.parametrize('script', ['train_fcn', 'train_classifier',
                                    'train_GAIN'])
def test_bad_schedule_flags_are_one_line(script, flags, message, voc,
                                         tmp_path, monkeypatch, capsys):
    argv = ['--dataset', 'voc', '--data-dir', voc, '--out', tmp_path / 'o',
            '--modelfile', tmp_path / 'no-model.npz'] + flags
    if script == 'train_fcn':
        argv.remove('--modelfile')
        argv.remove(tmp_path / 'no-model.npz')
    code, err = run_script(script, argv, monkeypatch, capsys)
    assert code == 2 and message in error_line(err)
    assert not os.path.exists(str(tmp_path / 'o'))
