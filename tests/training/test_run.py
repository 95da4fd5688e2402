"""training/run.py: a resume keeps its run's flags, never trains less."""
import json

import pytest

from helpers import error_line, fcn_args, finished_fcn, read_tree, run_script


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
