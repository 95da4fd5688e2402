"""A newcomer's first commands: the commands of the README and of
docs/GAIN.md and docs/OPERATIONS.md parse and name files that exist or
that an earlier command writes; train_fcn.py's defaults are
the shipped stand-in's schedule; every training ends with its model's
path and the next command, which runs; attention is in percent on screen
and in the log, from iteration 0 on every panel; train_fcn.py draws its
validation terms; a model whose attention is useless is flagged."""
import json
import os
import re
import shlex

import numpy as np
import pytest

import visualizations
from helpers import run_script_output
from runtime import cli
from test_help import parser_of
from metrics import AttentionMetrics
from metrics.attention import (POINTING_OVER_CHANCE, ZERO_CAMS_WARNING,
                               attention_warnings)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ('train_fcn', 'train_classifier', 'train_GAIN', 'evaluate',
           'visualize', 'make_pseudo_labels')


def shell_commands(markdown):
    """The commands of the ``sh`` blocks of a markdown file, continuation
    lines joined, comments dropped; a variable set to several words
    (``FLAGS="--a 1 --b 2"``) is expanded where a command uses it, other
    variables (paths) are left as they are."""
    blocks = re.findall(r'```sh\n(.*?)```', markdown, re.S)
    text = '\n'.join(blocks).replace('\\\n', ' ')
    bundles, commands = {}, []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 1 and re.match(r'^\w+=', words[0]):
            name, value = words[0].split('=', 1)
            if len(value.split()) > 1:
                bundles['$' + name] = shlex.split(value)
        elif words:
            commands.append([w for word in words
                             for w in bundles.get(word, [word])])
    return commands


def script_call(words):
    """``(script, argv)`` of a ``python X.py ...`` command, else None."""
    for k, word in enumerate(words):
        if word.endswith('python') and k + 1 < len(words) and \
                words[k + 1][:-3] in SCRIPTS:
            return words[k + 1][:-3], words[k + 2:]
    return None


#: The pages whose commands a user copies, in reading order: a page's
#: commands may take the models that an earlier page's commands write.
COMMAND_PAGES = ('README.md', os.path.join('docs', 'GAIN.md'),
                 os.path.join('docs', 'OPERATIONS.md'))


def test_documented_commands_parse_and_name_files_that_exist(monkeypatch):
    with open(os.path.join(ROOT, 'README.md')) as f:
        assert '. .venv/bin/activate' in f.read()
    written, calls = set(), dict.fromkeys(COMMAND_PAGES, 0)
    for page in COMMAND_PAGES:
        with open(os.path.join(ROOT, page)) as f:
            commands = shell_commands(f.read())
        for words in commands:
            call = script_call(words)
            if call is None:
                continue
            script, argv = call
            parser = parser_of(script, monkeypatch)
            args, unknown = parser.parse_known_args(argv)
            assert unknown == [], (page, script, unknown)
            calls[page] += 1
            models = [getattr(args, name, None) for name in
                      ('modelfile', 'pretrained', 'trained')]
            for model in [m for ms in models for m in
                          (ms if isinstance(ms, list) else [ms]) if m]:
                assert model.startswith('$') or model in written or \
                    os.path.isfile(os.path.join(ROOT, model)), \
                    (page, script, model)
            written.add(os.path.join(args.out, 'model.npz'))
    assert calls['README.md'] >= 10 and all(calls.values()), calls


def test_step_one_starts_from_the_shipped_stand_in():
    with open(os.path.join(ROOT, 'README.md')) as f:
        readme = f.read()
    assert ('| 1 | `train_classifier.py --modelfile '
            'models/pretrained/fcn8s_shapes_v2.npz` |') in readme
    assert os.path.isfile(os.path.join(ROOT, 'models', 'pretrained',
                                       'fcn8s_shapes_v2.npz'))


def test_train_fcn_defaults_are_the_stand_ins_schedule(monkeypatch):
    """models/pretrained/README.md's command, whose trunk carries a
    classifier, is train_fcn.py's defaults but for where it writes."""
    with open(os.path.join(ROOT, 'models', 'pretrained', 'README.md')) as f:
        command = [script_call(w) for w in shell_commands(f.read())
                   if script_call(w) and script_call(w)[0] == 'train_fcn']
    assert len(command) == 1
    parser = parser_of('train_fcn', monkeypatch)
    stand_in, unknown = parser.parse_known_args(command[0][1])
    defaults, _ = parser.parse_known_args([])
    assert unknown == [] and stand_in.cls_weight == 1
    given = {a.dest for a in parser._actions
             if set(a.option_strings) & set(command[0][1])}
    for name in given - {'out', 'snapshot_interval'}:
        default = getattr(defaults, name)
        if name == 'width':
            from train_fcn import WIDTH as default
        if name == 'iterations':
            from train_fcn import ITERATIONS as default
        assert getattr(stand_in, name) == default, name


@pytest.fixture
def figures(monkeypatch):
    """``{title: (panels, figure)}`` of every log figure drawn."""
    drawn = {}
    real = visualizations.log_figure

    def log_figure(log, panels, title):
        drawn[title] = (panels, real(log, panels, title))
        return drawn[title][1]
    monkeypatch.setattr(visualizations, 'log_figure', log_figure)
    return drawn


def printed_next(out_text):
    """The model path and the next commands a training run printed."""
    lines = out_text.splitlines()
    model = [l.split(': ', 1)[1] for l in lines if l.startswith('model: ')]
    nexts = [shlex.split(l.split(': ', 1)[1]) for l in lines
             if l.startswith('next: ')]
    return model, nexts


def run_printed(words, extra, monkeypatch, capsys):
    """Run a printed command (with ``extra`` flags); its stdout."""
    assert words[0] == cli.python_command()
    code, out, err = run_script_output(words[1][:-3], words[2:] + extra,
                                       monkeypatch, capsys)
    assert code == 0, err
    return out


def test_every_training_ends_with_its_model_and_the_next_command(
        files, tmp_path, monkeypatch, capsys, figures):
    short = ['--iterations', 2, '--batch-size', 2]
    cls = str(tmp_path / 'cls')
    code, out, err = run_script_output('train_classifier', [
        '--dataset', 'voc', '--data-dir', files['voc'], '--modelfile',
        files['model'], '--out', cls] + short, monkeypatch, capsys)
    assert code == 0, err
    model, nexts = printed_next(out)
    assert model == [os.path.join(cls, 'model.npz')]
    assert [w[1:4] for w in nexts] == [['train_GAIN.py', '--modelfile',
                                        model[0]]]
    assert nexts[0][-4:] == ['--dataset', 'voc', '--data-dir', files['voc']]

    gain = str(tmp_path / 'gain')
    printed = run_printed(nexts[0], ['--out', gain, '--attention-interval',
                                     1, '--attention-val-images', 2] + short,
                          monkeypatch, capsys)
    model, nexts = printed_next(printed)
    assert model == [os.path.join(gain, 'model.npz')]
    assert [w[1] for w in nexts] == ['evaluate.py', 'visualize.py']
    run_printed(nexts[0], ['--out', str(tmp_path / 'eval'), '--split',
                           'val'], monkeypatch, capsys)
    run_printed(nexts[1], ['--out', str(tmp_path / 'vis'), '--split',
                           'val', '--num', 1], monkeypatch, capsys)

    # attention in percent: the start line, and the log from iteration 0
    start = re.search(r'pointing game ([\d.]+) % \(chance ([\d.]+) %\), '
                      r'energy in mask ([\d.]+) %', printed)
    with open(os.path.join(gain, 'log')) as f:
        log = json.load(f)
    first = log[0]
    assert first['iteration'] == 0
    assert float(start.group(1)) == round(first['validation/main/pointing'],
                                          1)
    assert float(start.group(3)) == round(first['validation/main/energy'], 1)
    # every panel of attention_val.png starts at iteration 0
    title = [t for t in figures if 'attention on' in t]
    panels, fig = figures[title[0]]
    assert len(panels) == 4
    for ax in fig.axes[:4]:
        assert ax.lines and ax.lines[0].get_xdata()[0] == 0, ax.get_title()


def test_train_fcn_draws_its_validation_terms(files, tmp_path, monkeypatch,
                                              capsys, figures):
    code, out, err = run_script_output('train_fcn', [
        '--dataset', 'voc', '--data-dir', files['voc'], '--out',
        tmp_path / 'fcn', '--iterations', 2, '--batch-size', 2],
        monkeypatch, capsys)
    assert code == 0, err
    model, nexts = printed_next(out)
    assert [w[1:4] for w in nexts] == [['train_classifier.py', '--modelfile',
                                        model[0]]]
    panels, fig = figures['train_fcn.py: FCN8s segmentation']
    lines = {p.title.split(':')[0]: [l.get_label() for l in ax.lines]
             for p, ax in zip(panels, fig.axes)}
    assert lines['L_seg'] == lines['L_cl'] == ['train', 'validation']


def test_pointing_chance_is_the_share_of_the_class():
    """A peak on a random labelled pixel hits class c with the share of
    c among them; averaged per class, then over the classes."""
    chance = AttentionMetrics(4)
    a = np.zeros((4, 5), np.int32)
    a[0, :3] = 1                        # 3 of 20 pixels
    a[1:3, :] = 2                       # 10 of 20
    a[3, 4] = -1                        # ignored: 19 labelled
    b = np.zeros((2, 5), np.int32)
    b[0, :] = 1                         # 5 of 10
    for lbl, classes in ((a, [1, 2]), (b, [1])):
        chance.add(lbl, dict(cams=np.zeros((len(classes),) + lbl.shape),
                             cam_classes=np.array(classes)))
    expected = np.mean([np.mean([3 / 19., 5 / 10.]), 10 / 19.])
    assert chance.result()['pointing_chance'] == pytest.approx(expected)


def test_useless_attention_is_flagged_where_the_demo_never_goes():
    """The demo's models have at most 0.7 % all-zero CAMs and point 38 to
    59 % at a chance of 2.9 %; a trunk trained for segmentation only
    gave 13.9 % zero CAMs, the weak stand-in pointed 3.3 %."""
    demo = dict(zero_cams=0.0074, pointing=0.38, pointing_chance=0.029)
    assert attention_warnings(demo) == []
    assert len(attention_warnings(dict(demo, zero_cams=0.139))) == 1
    assert len(attention_warnings(dict(demo, pointing=0.033))) == 1
    assert ZERO_CAMS_WARNING > 0.0074 and POINTING_OVER_CHANCE * 0.029 < 0.38
