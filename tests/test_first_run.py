"""A newcomer's first commands: the commands of the README and of
docs/GAIN.md and docs/OPERATIONS.md parse and name files that exist or
that an earlier command writes; train_fcn.py's defaults are
the shipped stand-in's schedule; every training ends with its model's
path and the next command, which runs; attention is in percent on screen
and in the log, from iteration 0 on every panel."""
import json
import os
import re
import shlex

from helpers import ROOT, parser_of, printed_next, run_script_output
from runtime import cli


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
