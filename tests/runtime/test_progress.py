"""runtime/progress.py: plain lines off a terminal, a bar on one."""
import io

import chainer
import numpy as np
import pytest
from chainer.training import extensions
from tqdm import tqdm

from helpers import Toy
from runtime.progress import (PlainProgress, TrainingProgress, progress,
                              report_stream)


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_progress_lines_count_and_estimate():
    out = io.StringIO()
    shown = PlainProgress(5, 'evaluate m', 'image', out, interval=0)
    for _ in range(5):
        shown.update()
    shown.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 6    # the start, one per update, none repeated
    assert lines[0].startswith('evaluate m: 0/5 images (0%)')
    assert '? images/s, ? left' in lines[0]
    assert lines[-1].startswith('evaluate m: 5/5 images (100%)')
    assert lines[-1].endswith('00:00 left')
    assert not any(c in out.getvalue() for c in '\r\x1b')
    assert 'inf' not in out.getvalue()


def test_plain_progress_waits_its_interval_but_ends_with_a_line():
    out = io.StringIO()
    shown = progress(3, 'x', out=out)
    assert isinstance(shown, PlainProgress)
    shown.update(2)
    shown.update(1)
    shown.close()
    assert [l.split(' images')[0] for l in out.getvalue().splitlines()] \
        == ['x: 0/3', 'x: 3/3']


def test_terminal_gets_a_tqdm_bar():
    shown = progress(3, 'x', out=Terminal())
    assert isinstance(shown, tqdm)
    shown.close()


def run_toy(tmp_path, out, iterations=3):
    model = Toy()
    optimizer = chainer.optimizers.SGD(lr=0.1)
    optimizer.setup(model)
    it = chainer.iterators.SerialIterator(
        [np.ones(1, np.float32)] * 4, 2)
    trainer = chainer.training.Trainer(
        chainer.training.StandardUpdater(it, optimizer),
        (iterations, 'iteration'), out=str(tmp_path))
    trainer.extend(extensions.LogReport(trigger=(1, 'iteration')))
    trainer.extend(extensions.PrintReport(['iteration', 'main/loss'],
                                          out=report_stream(out)))
    trainer.extend(TrainingProgress(1, out=out))
    trainer.run()
    return out.getvalue()


def test_training_reports_are_plain_lines_off_a_terminal(tmp_path):
    text = run_toy(tmp_path, io.StringIO())
    assert '\x1b' not in text and '\r' not in text
    status = [l for l in text.splitlines() if l.endswith(' left')]
    assert [l.split(' (')[0] for l in status] == [
        'iteration 1/3', 'iteration 2/3', 'iteration 3/3']
    assert 'inf' not in text and status[-1].endswith('00:00 left')
    rows = [l.split() for l in text.splitlines()
            if l.split() and l.split()[0].isdigit()]
    assert [r[0] for r in rows] == ['1', '2', '3']


@pytest.mark.parametrize('iterations', [1, 3])
def test_terminal_bar_has_no_infinite_speed(tmp_path, iterations):
    text = run_toy(tmp_path, Terminal(), iterations)
    assert '\x1b[' in text          # redrawn in place
    assert 'iteration 1/%d' % iterations in text
    assert 'inf' not in text
