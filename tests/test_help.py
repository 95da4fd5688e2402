"""--help of every command: each flag explained, real defaults, each default
shown once."""
import argparse
import importlib
import re
import sys

import pytest

COMMANDS = ['train_fcn', 'train_classifier', 'train_GAIN', 'evaluate',
            'make_pseudo_labels', 'visualize', 'demo', 'datasets.shapes']
ITERATIONS = {'train_fcn': 1500, 'train_classifier': 500, 'train_GAIN': 200}


class Parsed(Exception):
    pass


def parser_of(command, monkeypatch):
    """The ArgumentParser that ``command``'s main() builds."""
    def capture(self, *args, **kwargs):
        raise Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', capture)
    monkeypatch.setattr(sys, 'argv', [command])
    with pytest.raises(Parsed) as e:
        importlib.import_module(command).main()
    return e.value.args[0]


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
