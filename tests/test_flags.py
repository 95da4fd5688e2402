"""Every numeric flag of every script is range-checked the same way, from
one table (runtime.flags.RANGES): a value out of range, NaN or inf is a
one-line error naming the flag, before any work."""
import argparse

import pytest

from helpers import error_line, run_script
from runtime import flags
from test_help import parser_of

SCRIPTS = ['train_fcn', 'train_classifier', 'train_GAIN', 'evaluate',
           'visualize', 'make_pseudo_labels']


@pytest.mark.parametrize('script', SCRIPTS)
def test_every_numeric_flag_has_a_range(script, monkeypatch):
    parser = parser_of(script, monkeypatch)
    numeric = [a.dest for a in parser._actions
               if a.type in (int, float) and a.help != argparse.SUPPRESS]
    assert numeric, script
    assert sorted(set(numeric) - set(flags.RANGES)) == []
    for action in parser._actions:       # the defaults are in range
        if action.dest in flags.RANGES and action.default is not None:
            assert flags.in_range(action.dest, action.default), action.dest


def test_the_table_reads_interval_notation():
    assert [flags.in_range('sigma', v) for v in (0, 0.5, 1)] == [
        False, True, False]
    assert [flags.in_range('low', v) for v in (0, 1, 1.01)] == [
        True, True, False]
    assert [flags.in_range('width', v) for v in (1 / 64., 1 / 65., 1)] == [
        True, False, True]
    assert [flags.in_range('cls_weight', v) for v in
            (0, 1e9, -1e-9, float('inf'), float('nan'))] == [
        True, True, False, False, False]


@pytest.mark.parametrize('script,bad,message', [
    ('train_fcn', ['--cls-weight', '-1'],
     '--cls-weight must be a finite number >= 0, got -1'),
    ('train_fcn', ['--width', '1e-9'],
     '--width must be in [1/64, 1], got 1e-09'),
    ('train_classifier', ['--width', '1e-9', '--train-trunk'],
     '--width must be in [1/64, 1], got 1e-09'),
    ('train_GAIN', ['--attention-val-images', '0'],
     '--attention-val-images must be > 0, got 0'),
    ('train_GAIN', ['--attention-val-images', '-1'],
     '--attention-val-images must be > 0, got -1'),
    ('train_GAIN', ['--omega', '0'], '--omega must be a finite number > 0'),
    ('train_GAIN', ['--ext-images', '1e-7', '--ext-weight', '1'],
     '--ext-images 1e-07 selects none of the 4 training images; give a '
     'count >= 1 or a fraction >= 0.125'),
    ('evaluate', ['--tau', '1'], '--tau must be in (0, 1), got 1'),
    ('evaluate', ['--batch-size', '0'], '--batch-size must be > 0, got 0'),
    ('make_pseudo_labels', ['--low', 'nan'], '--low must be in [0, 1], got '
     'nan'),
    ('make_pseudo_labels', ['--high', '2'], '--high must be in [0, 1]'),
    ('visualize', ['--num', '0'], '--num must be > 0, got 0'),
    ('visualize', ['--top', '-1'], '--top must be > 0, got -1'),
] + [(script, ['--max-image-pixels', '0'],
      '--max-image-pixels must be > 0, got 0') for script in SCRIPTS])
def test_a_flag_out_of_its_range_is_one_line(files, tmp_path, monkeypatch,
                                             capsys, script, bad, message):
    model = files['model']
    argv = ['--dataset', 'voc', '--data-dir', files['voc'], '--out',
            tmp_path / 'out', '--val-split', '', '--split', 'train'] + {
        'train_fcn': [], 'train_classifier': ['--modelfile', model],
        'train_GAIN': ['--modelfile', model, '--attention-val-images', 1],
        'evaluate': ['--modelfile', model],
        'make_pseudo_labels': ['--modelfile', model],
        'visualize': ['--pretrained', model, '--trained', model]}[script]
    if script in ('train_fcn', 'train_classifier', 'train_GAIN'):
        argv += ['--iterations', 1, '--batch-size', 2]   # if not refused
    else:
        argv.remove('--val-split')
        argv.remove('')
    code, err = run_script(script, argv + bad, monkeypatch, capsys)
    assert code == 2
    assert message in error_line(err)
    assert not (tmp_path / 'out').exists()
