"""training/extensions/tensorboard.py: a run's values read back from
TensorBoard; it never writes through what is planted in --out."""
import glob
import html
import io
import json
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import PIL.Image
import pytest

from bench import tensorboard_server as tensorboard
from helpers import ENV, ROOT, run_script, write_voc


def run_name(base, name):
    """The TensorBoard run of the one run directory of ``base/name``
    (``name/tensorboard/<run>`` under ``--logdir base``)."""
    run, = [d for d in os.listdir(os.path.join(base, name, 'tensorboard'))
            if os.path.isdir(os.path.join(base, name, 'tensorboard', d))]
    return '%s/tensorboard/%s' % (name, run)


def common(voc, out):
    return ['--dataset', 'voc', '--data-dir', voc, '--batch-size', 2,
            '--out', out]


def eventually(read, ready, deadline=120):
    """``read()`` once ``ready`` holds for it (the server loads event files
    in the background)."""
    end = time.monotonic() + deadline
    while True:
        value = read()
        if ready(value) or time.monotonic() > end:
            return value
        time.sleep(0.2)


def scalars(url, run, tag):
    """``{step: value}`` as the server shows them; a step shown twice
    fails."""
    points = tensorboard.fetch(url, '/data/plugin/scalars/scalars', run=run,
                               tag=tag)
    steps = [step for _, step, _ in points]
    assert len(steps) == len(set(steps)), (tag, steps)
    return {step: value for _, step, value in points}


def script(name, argv):
    proc = subprocess.run([sys.executable, name + '.py'] + [str(a)
                                                           for a in argv],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """A classifier trained from scratch, GAIN on it with attention
    pictures at iterations 2 and 4, and evaluate.py's tables."""
    base = tmp_path_factory.mktemp('tensorboard')
    voc = str(base / 'VOC')
    write_voc(voc, {'train': 6, 'val': 3}, size=(40, 48))
    cls, gain, ev = (str(base / n) for n in ('cls', 'gain', 'eval'))
    script('train_classifier', common(voc, cls) + [
        '--train-trunk', '--iterations', 20, '--val-interval', 10])
    script('train_GAIN', common(voc, gain) + [
        '--modelfile', cls + '/model.npz', '--iterations', 4,
        '--attention-interval', 2, '--val-interval', 2])
    script('evaluate', [
        '--dataset', 'voc', '--data-dir', voc, '--split', 'val',
        '--modelfile', cls + '/model.npz', gain + '/model.npz',
        '--names', 'classifier', 'gain', '--compare', 0, 1, '--out', ev,
        '--tensorboard'])
    return dict(base=str(base), cls=cls, gain=gain, eval=ev)


@pytest.mark.slow
def test_server_shows_every_logged_value_pictures_and_texts(runs):
    with tensorboard.server(runs['base']) as url:
        run = {n: run_name(runs['base'], n) for n in ('cls', 'gain', 'eval')}
        expected = set(run.values())
        assert set(eventually(
            lambda: tensorboard.fetch(url, '/data/runs'),
            lambda names: expected <= set(names))) == expected

        for name in ('cls', 'gain'):
            log = json.load(open(os.path.join(runs[name], 'log')))
            keys = {k for entry in log for k in entry} - {
                'epoch', 'iteration', 'elapsed_time'}
            tags = eventually(
                lambda: tensorboard.fetch(url, '/data/plugin/scalars/tags'),
                lambda t: keys <= set(t.get(run[name], {})))[run[name]]
            assert set(tags) == keys
            for key in keys:
                shown = scalars(url, run[name], key)
                logged = {e['iteration']: e[key] for e in log if key in e}
                assert sorted(shown) == sorted(logged), key
                for step, value in logged.items():
                    assert shown[step] == pytest.approx(value, rel=1e-6), key
            # the configuration as text, the config.json of the run
            texts = tensorboard.fetch(url, '/data/plugin/text/text',
                                      run=run[name],
                                      tag='config/text_summary')
            config = json.load(open(os.path.join(runs[name], 'config.json')))
            assert len(texts) == 1
            code = texts[0]['text'].split('<code>')[1].split('</code>')[0]
            assert json.loads(html.unescape(code)) == config

        for key in ('validation/main/map', 'validation/main/pointing',
                    'validation/main/attention_miou', 'main/am', 'lr'):
            assert key in tensorboard.fetch(
                url, '/data/plugin/scalars/tags')[run['gain']]
        assert 'validation/main/map' in tensorboard.fetch(
            url, '/data/plugin/scalars/tags')[run['cls']]

        # the attention pictures: the PNGs of OUT/attention, pixel for pixel
        images = tensorboard.fetch(url, '/data/plugin/images/images',
                                   run=run['gain'], tag='attention',
                                   sample=0)
        assert [i['step'] for i in images] == [2, 4]
        for image in images:
            body = tensorboard.fetch(
                url, '/data/plugin/images/individualImage?' + image['query'])
            shown = np.asarray(PIL.Image.open(io.BytesIO(body)).convert('RGB'))
            path = os.path.join(runs['gain'], 'attention',
                                'iter_%06d.png' % image['step'])
            drawn = np.asarray(PIL.Image.open(path).convert('RGB'))
            np.testing.assert_array_equal(shown, drawn)

        # evaluate.py's tables
        tags = tensorboard.fetch(url, '/data/plugin/text/tags')[run['eval']]
        assert sorted(tags) == ['comparison/text_summary',
                                'config/text_summary',
                                'evaluation/text_summary']
        table = tensorboard.fetch(url, '/data/plugin/text/text',
                                  run=run['eval'],
                                  tag='evaluation/text_summary')[0]['text']
        metrics = json.load(open(os.path.join(runs['eval'], 'metrics.json')))
        assert '<td>%.1f</td>' % (100 * metrics['models']['gain']['map']) \
            in table
        assert '<th>Mean IU</th>' in table
        # a row per model (a tiny model may be marked (!): at chance)
        assert re.search(r'<td>classifier( \(!\))?</td>', table)
        assert re.search(r'<td>gain( \(!\))?</td>', table)


@pytest.mark.slow
def test_a_killed_and_resumed_run_shows_one_curve(tmp_path, monkeypatch,
                                                  capsys):
    """A run killed after its snapshot of iteration 10 had logged to 20;
    resumed, it logs 20 again: TensorBoard shows each step once, with the
    values of an uninterrupted run."""
    voc = str(tmp_path / 'VOC')
    write_voc(voc, {'train': 6, 'val': 3}, size=(40, 48))
    argv = ['--train-trunk', '--iterations', 20, '--snapshot-interval', 10,
            '--val-split', '']
    for name in ('whole', 'killed'):
        code, err = run_script('train_classifier', common(
            voc, str(tmp_path / name)) + argv, monkeypatch, capsys)
        assert code == 0, err
    killed = tmp_path / 'killed'
    # what a kill after iteration 20's log and before its snapshot leaves
    os.remove(str(killed / 'snapshot_iter_20.npz'))
    os.remove(str(killed / 'model.npz'))
    events = str(killed / 'tensorboard' / '*' / 'events.out.tfevents.*')
    first, = glob.glob(events)
    written = open(first, 'rb').read()
    code, err = run_script('train_classifier', common(voc, str(killed)) +
                           argv, monkeypatch, capsys)
    assert code == 0 and 'resuming from' in err
    # a second event file; the first is kept as it was
    assert len(glob.glob(events)) == 2
    assert open(first, 'rb').read() == written

    with tensorboard.server(str(tmp_path)) as url:
        run = {n: run_name(str(tmp_path), n) for n in ('whole', 'killed')}

        def both():
            tags = tensorboard.fetch(url, '/data/plugin/scalars/tags')
            return [tags.get(run[n], {}) for n in ('whole', 'killed')]
        whole, resumed = eventually(both, lambda t: all(
            'main/loss' in tags for tags in t))
        assert set(whole) == set(resumed) == {'main/loss', 'main/accuracy',
                                              'lr'}
        for key in whole:
            a = scalars(url, run['whole'], key)
            b = scalars(url, run['killed'], key)
            assert sorted(a) == sorted(b) == [10, 20], key
            for step in a:
                assert b[step] == pytest.approx(a[step], rel=1e-6), key


def plant(directory, target, kind, seconds=120):
    """Under ``directory``, for each of the next ``seconds`` seconds, the
    names tensorboardX gave its event file (``events.out.tfevents.<time>.
    <host>`` with the suffixes the tools used: none, and the number of event
    files already there), each a link to ``target`` or a FIFO."""
    now, host = int(time.time()), socket.gethostname()
    names = ['events.out.tfevents.%d.%s%s' % (t, host, suffix)
             for t in range(now - 2, now - 2 + seconds)
             for suffix in ('', '.%03d' % (2 * seconds))]
    for name in names:
        if kind == 'link':
            os.symlink(str(target), os.path.join(directory, name))
        else:
            os.mkfifo(os.path.join(directory, name))
    return names


@pytest.mark.parametrize('planted', ['link', 'fifo'])
@pytest.mark.parametrize('script', ['train_classifier', 'evaluate'])
def test_nothing_planted_under_tensorboard_is_written_or_opened(
        files, tmp_path, script, planted):
    """tensorboardX opens a name one can foresee: links planted under
    OUT/tensorboard made a run overwrite what they point to, FIFOs hung it
    (SIGTERM did not end it). Its writer now only writes into a directory
    the run made."""
    out = tmp_path / 'out'
    (out / 'tensorboard').mkdir(parents=True)
    victim = tmp_path / 'victim.txt'
    victim.write_text('DATA\n')
    names = plant(str(out / 'tensorboard'), victim, planted)
    argv = ['--dataset', 'voc', '--data-dir', files['voc'], '--out', out,
            '--modelfile', files['model']] + {
        'train_classifier': ['--iterations', 2, '--batch-size', 2,
                             '--val-split', ''],
        'evaluate': ['--split', 'val', '--no-attention', '--tensorboard']
    }[script]
    try:
        proc = subprocess.run([sys.executable, script + '.py'] + [
            str(a) for a in argv], cwd=ROOT, env=ENV, capture_output=True,
            text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail('%s hangs on a FIFO under OUT/tensorboard' % script)
    assert proc.returncode == 0, proc.stderr
    assert victim.read_text() == 'DATA\n'
    left = os.listdir(str(out / 'tensorboard'))
    assert sorted(set(left) - set(names)) == [run_name(str(tmp_path),
                                                       'out').split('/')[-1]]
    run, = glob.glob(str(out / 'tensorboard' / '*' / 'events.out.*'))
    assert os.path.isfile(run) and not os.path.islink(run)
