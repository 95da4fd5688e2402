"""runtime/flags.py: every flag explained, every bad value one line."""
import argparse
import re

import pytest

from helpers import error_line, gain_args, parser_of, run_script
from models.precision import PRECISIONS
from runtime import flags


SCRIPTS = ['train_fcn', 'train_classifier', 'train_GAIN', 'evaluate',
           'visualize', 'make_pseudo_labels', 'segment']


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
        'visualize': ['--pretrained', model, '--trained', model],
        'segment': []}[script]
    if script in ('train_fcn', 'train_classifier', 'train_GAIN'):
        argv += ['--iterations', 1, '--batch-size', 2]   # if not refused
    elif script == 'segment':
        argv = ['--out', tmp_path / 'out', '--modelfile', model, '--images',
                files['voc'] + '/JPEGImages']
    else:
        argv.remove('--val-split')
        argv.remove('')
    code, err = run_script(script, argv + bad, monkeypatch, capsys)
    assert code == 2
    assert message in error_line(err)
    assert not (tmp_path / 'out').exists()


COMMANDS = ['train_fcn', 'train_classifier', 'train_GAIN', 'evaluate',
            'make_pseudo_labels', 'visualize', 'segment', 'demo',
            'datasets.shapes']


#: The runs' lengths without --iterations: the cpu preset's.
ITERATIONS = {'train_fcn': 1500, 'train_classifier': 600, 'train_GAIN': 150}


def flag_blocks(help_text):
    """``{flag: its lines of help}`` of the options section."""
    blocks, flag = {}, None
    for line in help_text.split('options:\n', 1)[1].splitlines():
        m = re.match(r'  (-\S+)', line)
        if m:
            flag = m.group(1).rstrip(',')
            blocks[flag] = line
        elif flag:
            blocks[flag] += '\n' + line
    return blocks


@pytest.mark.parametrize('command', COMMANDS)
def test_every_flag_explained_with_one_real_default(command, monkeypatch):
    parser = parser_of(command, monkeypatch)
    for action in parser._actions:
        if action.option_strings and action.help != argparse.SUPPRESS:
            assert action.help, (command, action.option_strings)
    text = parser.format_help()
    assert '(default: None)' not in text
    assert '(default: False)' not in text
    blocks = flag_blocks(text)
    assert sorted(blocks) == sorted(
        a.option_strings[0] for a in parser._actions
        if a.option_strings and a.help != argparse.SUPPRESS)
    for flag, block in blocks.items():
        assert block.count('default') <= 1, block
    if command in ITERATIONS:
        assert 'default: %d unless --epochs' % ITERATIONS[command] in \
            ' '.join(blocks['--iterations'].split())


@pytest.mark.parametrize('script,flags,message', [
    ('train_fcn', ['--lr', '-1'], '--lr must be a finite number > 0'),
    ('train_fcn', ['--lr', '0'], '--lr must be'),
    ('train_fcn', ['--lr', 'nan'], '--lr must be'),
    ('train_fcn', ['--lr', 'abc'], "argument --lr: invalid float value"),
    ('train_fcn', ['--batch-size', '0'], '--batch-size must be > 0'),
    ('train_fcn', ['--iterations', '-3'], '--iterations must be > 0'),
    ('train_fcn', ['--epochs', 'inf'], '--epochs must be'),
    ('train_fcn', ['--snapshot-interval', '0'],
     '--snapshot-interval must be > 0'),
    ('train_fcn', ['--width', '2'], '--width must be in [1/64, 1], got 2'),
    ('train_fcn', ['--weight-decay', '-1'], '--weight-decay must be'),
    ('train_fcn', ['--resume', '--force'], 'contradict'),
    ('train_fcn', ['--no-such-flag'], 'unrecognized arguments'),
    ('train_GAIN', ['--sigma', '1.5'], '--sigma must be in (0, 1)'),
    ('train_GAIN', ['--sigma', '0'], '--sigma must be in (0, 1)'),
    ('train_GAIN', ['--sigma', 'nan'], '--sigma must be in (0, 1)'),
    ('train_GAIN', ['--omega', 'inf'], '--omega must be'),
    ('train_GAIN', ['--am-weight', 'nan'], '--am-weight must be a finite number >= 0'),
    ('train_GAIN', ['--attention-interval', '0'],
     '--attention-interval must be > 0'),
    ('train_GAIN', ['--ext-images', '7.5', '--ext-weight', '1'],
     '--ext-images 7.5'),
    ('train_GAIN', ['--ext-images', '20'], 'GAIN_ext needs both'),
    ('train_GAIN', ['--ext-weight', '1'], 'GAIN_ext needs both'),
    ('train_GAIN', ['--ext-images', 'abc'], '--ext-images must be'),
    ('train_GAIN', ['--am-warmup', '3x'], "--am-warmup: warm-up must be N"),
    ('train_GAIN', ['--ext-warmup=-1'],
     '--ext-warmup: warm-up must be a finite number >= 0'),
])
def test_flags_out_of_range(files, tmp_path, monkeypatch, capsys, script,
                            flags, message):
    argv = ['--dataset', 'voc', '--data-dir', files['voc'], '--out', tmp_path]
    if script == 'train_GAIN':
        argv += ['--modelfile', files['good']]
    code, err = run_script(script, argv + flags, monkeypatch, capsys)
    assert code == 2 and message in error_line(err)


def test_flag_offers_every_precision():
    action = {a.dest: a for a in flags.parser('x', iterations=1)._actions}[
        'dtype']
    assert tuple(action.choices) == PRECISIONS
    assert action.default == 'float32'


@pytest.mark.parametrize('script', ['train_fcn', 'train_classifier',
                                    'train_GAIN', 'evaluate', 'visualize',
                                    'make_pseudo_labels'])
@pytest.mark.parametrize('seed', ['-1', '4294967296'])
def test_seeds_out_of_range(files, tmp_path, monkeypatch, capsys, script,
                            seed):
    model = files['model']
    argv = ['--seed', seed, '--out', tmp_path / 'out'] + (
        ['--pretrained', model, '--trained', model] if script == 'visualize'
        else [] if script == 'train_fcn' else ['--modelfile', model])
    code, err = run_script(script, argv, monkeypatch, capsys)
    assert code == 2
    assert 'argument --seed: must be in 0..4294967295, got %s' % seed in \
        error_line(err)
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('flags,message', [
    (['--ext-images', 'nan'], '--ext-images nan: must be'),
    (['--ext-images', 'inf'], '--ext-images inf: must be'),
    (['--am-warmup', 'nane'], "warm-up must be a finite number >= 0, got "
                              "'nane'"),
    (['--ext-warmup', 'infe'], 'warm-up must be a finite number'),
])
def test_gain_flags_that_are_not_numbers(files, tmp_path, monkeypatch,
                                         capsys, flags, message):
    code, err = run_script('train_GAIN', gain_args(files, tmp_path / 'g',
                                                   *flags),
                           monkeypatch, capsys)
    assert code == 2 and message in error_line(err)
