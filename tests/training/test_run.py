"""training/run.py: a resume keeps its run's flags, never trains less."""
import json
import os
import subprocess
import sys

import pytest

from helpers import (ENV, ROOT, error_line, fcn_args, finished_fcn, read_tree,
                     run_script)


def test_a_resume_with_other_training_flags_is_refused_naming_them(
        files, tmp_path, monkeypatch, capsys):
    out = tmp_path / 'fcn'
    finished_fcn(files, out, monkeypatch, capsys)
    config = (out / 'config.json').read_bytes()
    code, err = run_script('train_fcn', fcn_args(
        files['voc'], out, '--resume', '--iterations', 3, '--lr', 0.01,
        '--modelfile', files['model'], '--width', 1 / 16.),
        monkeypatch, capsys)
    line = error_line(err)
    assert code == 2
    assert '--lr 0.01 (was 0.001)' in line
    assert '--modelfile %s (was null)' % files['model'] in line
    assert (out / 'config.json').read_bytes() == config
    # Going on for longer is a resume of the same run.
    code, err = run_script('train_fcn', fcn_args(
        files['voc'], out, '--resume', '--iterations', 3),
        monkeypatch, capsys)
    assert code == 0, err
    assert json.load(open(str(out / 'config.json')))['iterations'] == 3


@pytest.mark.parametrize('shorter', [
    ['--resume', '--iterations', 1],
    ['--resume', '--epochs', 0.5],         # 4 images, batch 2: 1 epoch done
    ['--iterations', 1, 'KILLED'],         # snapshot but no model.npz yet
])
def test_a_resume_that_would_train_less_is_refused(
        files, tmp_path, monkeypatch, capsys, shorter):
    """It would train nothing and rewrite config.json to a length that
    never trained."""
    out = tmp_path / 'fcn'
    finished_fcn(files, out, monkeypatch, capsys)
    if 'KILLED' in shorter:
        shorter = shorter[:-1]
        (out / 'model.npz').unlink()
    before = read_tree(str(out))
    argv = fcn_args(files['voc'], out)
    if '--epochs' in shorter:                # --iterations would override
        del argv[argv.index('--iterations'):argv.index('--iterations') + 2]
    code, err = run_script('train_fcn', argv + shorter, monkeypatch, capsys)
    assert code == 2
    flag = '--iterations 1' if '--iterations' in shorter else '--epochs 0.5'
    assert error_line(err) == (
        'error: %s: the run in %s has already trained 2 iterations%s '
        '(snapshot_iter_2.npz); resuming cannot train less: pass a longer '
        '%s, or --force to start over' % (
            flag, out, '' if '--iterations' in shorter else ' (1 epochs)',
            flag.split()[0]))
    assert read_tree(str(out)) == before


def test_another_runs_snapshot_is_refused_naming_the_flags(
        files, tmp_path, monkeypatch, capsys):
    """--resume of a snapshot of another run (here another --lr and
    --modelfile) into a new --out was accepted: a snapshot records its
    run's flags."""
    first = tmp_path / 'first'
    finished_fcn(files, first, monkeypatch, capsys)
    out = tmp_path / 'second'
    snapshot = str(first / 'snapshot_iter_2.npz')
    code, err = run_script('train_fcn', fcn_args(
        files['voc'], out, '--resume', snapshot, '--iterations', 3, '--lr',
        0.01, '--modelfile', files['model']), monkeypatch, capsys)
    assert code == 2
    assert error_line(err) == (
        'error: %s belongs to a run trained with other flags: --lr 0.01 '
        '(was 0.001), --modelfile %s (was null); resuming it would mix two '
        'runs: rerun with its flags, or pass --force to start over'
        % (snapshot, files['model']))
    assert not out.exists()
    # the same flags (another --out, a longer run) resume it
    code, err = run_script('train_fcn', fcn_args(
        files['voc'], out, '--resume', snapshot, '--iterations', 3),
        monkeypatch, capsys)
    assert code == 0 and 'resuming from %s (iteration 2)' % snapshot in err


@pytest.mark.parametrize('config', ['missing', 'corrupt'])
def test_a_run_without_its_config_json_still_resumes_with_its_flags(
        files, tmp_path, monkeypatch, capsys, config):
    """With OUT/config.json lost or corrupt, a rerun with other flags
    resumed silently; the flags come from the snapshot now."""
    out = tmp_path / 'fcn'
    finished_fcn(files, out, monkeypatch, capsys)
    if config == 'missing':
        (out / 'config.json').unlink()
    else:
        (out / 'config.json').write_text('{"lr": 0.0')
    before = read_tree(str(out))
    code, err = run_script('train_fcn', fcn_args(
        files['voc'], out, '--resume', '--iterations', 3, '--lr', 0.01),
        monkeypatch, capsys)
    assert code == 2
    assert '--lr 0.01 (was 0.001)' in error_line(err)
    assert read_tree(str(out)) == before


def test_a_fifo_given_to_resume_is_one_line_not_a_hang(files, tmp_path):
    fifo = str(tmp_path / 'snapshot_iter_9.npz')
    os.mkfifo(fifo)
    try:
        proc = subprocess.run(
            [sys.executable, 'train_fcn.py'] + [str(a) for a in fcn_args(
                files['voc'], tmp_path / 'out', '--resume', fifo)],
            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail('train_fcn.py --resume FIFO hangs')
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        'error: --resume %s: a FIFO, not a regular file' % fifo)


@pytest.mark.parametrize('length,iterations', [([], 2), (['--epochs', 1.5],
                                                         3)])
def test_config_records_the_length_as_run(files, tmp_path, monkeypatch,
                                          capsys, length, iterations):
    """Without --iterations config.json holds the run's length in updates:
    the script's default (2 here), or that of --epochs (1.5 epochs of 4
    images at batch 2: 3 updates)."""
    import train_fcn
    monkeypatch.setattr(train_fcn, 'ITERATIONS', 2)
    argv = fcn_args(files['voc'], tmp_path / 'fcn')
    del argv[argv.index('--iterations'):argv.index('--iterations') + 2]
    code, err = run_script('train_fcn', argv + length, monkeypatch, capsys)
    assert code == 0, err
    config = json.load(open(str(tmp_path / 'fcn' / 'config.json')))
    assert config['iterations'] == iterations
    assert max(p.name for p in (tmp_path / 'fcn').glob('snapshot_iter_*')) \
        == 'snapshot_iter_%d.npz' % iterations      # the last update's
