"""A newcomer's first commands: the commands of the README and of
docs/GAIN.md and docs/OPERATIONS.md parse, name files that exist or that
an earlier command writes and never write into one another's --out; the
README's pipeline runs the preset behind its Results; train_fcn.py's
defaults are the shipped stand-in's schedule; every training ends with its
model's path and the next command, which runs; attention is in percent on
screen and in the log, from iteration 0 on every panel."""
import importlib
import json
import os
import re
import shlex

from helpers import ROOT, parser_of, printed_next, run_script_output
from runtime import cli


SCRIPTS = ('train_fcn', 'train_classifier', 'train_GAIN', 'evaluate',
           'visualize', 'make_pseudo_labels', 'segment')


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
    written, calls, outs = set(), dict.fromkeys(COMMAND_PAGES, 0), {}
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
            if script.startswith('train') and not args.resume:
                assert args.out not in outs, (page, args.out, outs[args.out])
                outs[args.out] = page
    assert calls['README.md'] >= 10 and all(calls.values()), calls


def test_step_one_starts_from_the_shipped_stand_in():
    with open(os.path.join(ROOT, 'README.md')) as f:
        readme = f.read()
    assert ('| 1 | `train_classifier.py --modelfile '
            'models/pretrained/fcn8s_shapes_v3.npz` |') in readme
    assert os.path.isfile(os.path.join(ROOT, 'models', 'pretrained',
                                       'fcn8s_shapes_v3.npz'))


#: Flags that do not change what a run computes: where it writes, its
#: snapshots and attention pictures (drawn in test mode, no random draw).
NOT_SETTINGS = {'out', 'modelfile', 'snapshot_interval', 'attention_interval'}


def test_the_readme_pipeline_runs_the_preset_of_its_results(monkeypatch):
    """Each training command of the README's shapes pipeline has the
    settings of the preset behind the Results (the orchestrators' command
    lines of pipeline.presets, seed 0), flag for flag."""
    from pipeline import presets
    cfg = presets.PRESETS['cpu']
    expected = dict(
        train_fcn=presets.fcn_args(cfg),
        train_classifier=presets.classifier_args(cfg, 'm.npz', 0),
        train_GAIN=presets.gain_args(cfg, 'm.npz', 0))
    with open(os.path.join(ROOT, 'README.md')) as f:
        calls = [script_call(w) for w in shell_commands(f.read())]
    for script, preset_argv in expected.items():
        parser = parser_of(script, monkeypatch)
        want = vars(parser.parse_known_args([str(a) for a in
                                             preset_argv])[0])
        readme = [parser.parse_known_args(argv)[0] for name, argv in
                  filter(None, calls) if name == script]
        readme = [vars(a) for a in readme if a.dataset == 'shapes']
        assert readme, script
        for got in [want] + readme:     # the length and width as run
            module = importlib.import_module(script)
            if got['iterations'] is None and got['epochs'] is None:
                got['iterations'] = module.ITERATIONS
            if got.get('width', 0) is None and not got['modelfile']:
                got['width'] = module.WIDTH
        for got in readme:      # width None with --modelfile: the model's
            differ = {k: (got[k], want[k]) for k in want
                      if got[k] != want[k] and k not in NOT_SETTINGS and
                      not (k == 'width' and got[k] is None)}
            assert differ == {}, (script, differ)


def test_train_fcn_defaults_are_the_stand_ins_schedule(monkeypatch):
    """models/pretrained/README.md's two commands, whose trunk carries a
    classifier, are train_fcn.py's defaults but for where they write; the
    second starts from the first's model."""
    with open(os.path.join(ROOT, 'models', 'pretrained', 'README.md')) as f:
        commands = [script_call(w)[1] for w in shell_commands(f.read())
                    if script_call(w) and script_call(w)[0] == 'train_fcn']
    assert len(commands) == 2
    parser = parser_of('train_fcn', monkeypatch)
    defaults, _ = parser.parse_known_args([])
    runs = []
    for words in commands:
        run, unknown = parser.parse_known_args(words)
        assert unknown == [] and run.cls_weight == 1
        runs.append(run)
        given = {a.dest for a in parser._actions
                 if set(a.option_strings) & set(words)}
        for name in given - {'out', 'snapshot_interval', 'modelfile'}:
            default = getattr(defaults, name)
            if name == 'width':
                from train_fcn import WIDTH as default
            if name == 'iterations':
                from train_fcn import ITERATIONS as default
            assert getattr(run, name) == default, name
    assert runs[0].modelfile is None
    assert runs[1].modelfile == os.path.join(runs[0].out, 'model.npz')


def run_printed(words, extra, monkeypatch, capsys):
    """Run a printed command (with ``extra`` flags); its stdout."""
    assert words[0] == cli.python_command()
    code, out, err = run_script_output(words[1][:-3], words[2:] + extra,
                                       monkeypatch, capsys)
    assert code == 0, err
    return out


def printed_rows(text):
    """The rows a training printed: ``[{heading: text}]`` cut at the
    columns of its heading line."""
    lines = [l.replace('\x1b[J', '') for l in text.splitlines()]
    head = [l for l in lines if l.startswith('epoch ')][0]
    starts = [m.start() for m in re.finditer(r'(?<=  )\S', head)] + [None]
    cut = lambda l: [l[a:b].strip() for a, b in zip([0] + starts[:-1],
                                                       starts)]
    return [dict(zip(cut(head), cut(l))) for l in lines
            if re.match(r'\d+ +\d+ ', l)]


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
    gain = str(tmp_path / 'gain')     # beside --out, as the README's
    assert nexts == [[cli.python_command(), 'train_GAIN.py', '--modelfile',
                      model[0], '--out', gain, '--dataset', 'voc',
                      '--data-dir', files['voc']]]

    printed = run_printed(nexts[0], ['--attention-interval', 1,
                                     '--attention-val-images', 2] + short,
                          monkeypatch, capsys)
    model, nexts = printed_next(printed)
    assert model == [os.path.join(gain, 'model.npz')]
    assert [(w[1], w[w.index('--out') + 1]) for w in nexts] == [
        ('evaluate.py', str(tmp_path / 'eval')),
        ('visualize.py', str(tmp_path / 'vis'))]
    run_printed(nexts[0], ['--split', 'val'], monkeypatch, capsys)
    run_printed(nexts[1], ['--split', 'val', '--num', 1], monkeypatch,
                capsys)

    # attention in percent: the start line, the log from iteration 0 and
    # the printed rows of every validation, one decimal
    start = re.search(r'pointing game ([\d.]+) % \(chance ([\d.]+) %\), '
                      r'energy in mask ([\d.]+) %', printed)
    with open(os.path.join(gain, 'log')) as f:
        log = json.load(f)
    first = log[0]
    assert first['iteration'] == 0
    assert float(start.group(1)) == round(first['validation/main/pointing'],
                                          1)
    assert float(start.group(3)) == round(first['validation/main/energy'], 1)
    rows = printed_rows(printed)
    assert [r['iteration'] for r in rows] == [str(e['iteration'])
                                              for e in log] == ['0', '2']
    for row, entry in zip(rows, log):
        for key in ('pointing', 'energy', 'attention_miou', 'map'):
            assert row['val %s %%' % key.replace('_', ' ')] == '%.1f' % (
                entry['validation/main/' + key])
    # every panel of attention_val.png starts at iteration 0
    title = [t for t in figures if 'attention on' in t]
    panels, fig = figures[title[0]]
    assert len(panels) == 4
    for ax in fig.axes[:4]:
        assert ax.lines and ax.lines[0].get_xdata()[0] == 0, ax.get_title()


def test_the_next_steps_of_gain_on_shapes_choose_tau_on_tune():
    """On shapes train_GAIN.py's next evaluation takes its thresholds from
    an evaluation on tune, written where it then looks for it."""
    import argparse
    from train_GAIN import next_steps
    args = argparse.Namespace(dataset='shapes', data_dir=None, device='-1',
                              modelfile='runs/classifier/model.npz',
                              out='runs/gain')
    steps = [shlex.split(c)[1:] for c in next_steps(args)]
    models = ['--modelfile', 'runs/classifier/model.npz',
              'runs/gain/model.npz']
    assert steps == [
        ['evaluate.py', '--split', 'tune'] + models + ['--out',
                                                       'runs/eval_tune'],
        ['evaluate.py'] + models + ['--tau-from',
                                    'runs/eval_tune/metrics.json', '--out',
                                    'runs/eval'],
        ['visualize.py', '--pretrained', models[1], '--trained', models[2],
         '--out', 'runs/vis']]
