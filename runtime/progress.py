"""Progress of long jobs: counts, speed and time left.

On a terminal it is a bar redrawn in place (tqdm; chainer's bar during
training). Elsewhere (a log file, sbatch, mpiexec) cursor codes would litter
the output, so it is plain lines: one every ``PLAIN_INTERVAL`` seconds and
one at the end. The speed counts from the start of this run, so none is
shown before anything is done (never "inf").
"""
import sys
import time

import chainer
from chainer.training.extensions import util
from tqdm import tqdm

PLAIN_INTERVAL = 10.0  # seconds between plain lines


def is_terminal(stream):
    return getattr(stream, 'isatty', lambda: False)()


def _remaining(done, total, elapsed):
    """``(speed, 'h:mm:ss' left)`` of ``done`` of ``total`` units in
    ``elapsed`` seconds; ``(None, '?')`` before there is a speed."""
    if done <= 0 or elapsed <= 0:
        return None, '?'
    speed = done / elapsed
    return speed, tqdm.format_interval(max(total - done, 0) / speed)


def progress(total, desc, unit='image', out=None):
    """A counter of ``total`` units with ``update(n)`` and ``close()`` (and
    a context manager), written to ``out`` (default: stderr)."""
    out = out or sys.stderr
    if is_terminal(out):
        return tqdm(total=total, desc=desc, unit=unit, file=out,
                    dynamic_ncols=True)
    return PlainProgress(total, desc, unit, out)


class PlainProgress(object):
    """Progress as plain lines: ``desc: 90/200 images (45%), 0:30 elapsed,
    3.00 images/s, 00:37 left``."""

    def __init__(self, total, desc, unit, out, interval=PLAIN_INTERVAL):
        self.total, self.desc, self.unit = total, desc, unit
        self.out, self.interval = out, interval
        self.n = self.shown = 0
        self.start = self.last = time.time()
        self._write()

    def update(self, n=1):
        self.n += n
        if time.time() - self.last >= self.interval:
            self._write()

    def close(self):
        if self.shown != self.n:
            self._write()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _write(self):
        self.last = time.time()
        elapsed = self.last - self.start
        speed, left = _remaining(self.n, self.total, elapsed)
        self.out.write('%s: %d/%d %ss (%d%%), %s elapsed, %s %ss/s, %s left\n'
                       % (self.desc, self.n, self.total, self.unit,
                          100 * self.n // max(self.total, 1),
                          tqdm.format_interval(elapsed),
                          '?' if speed is None else '%.2f' % speed,
                          self.unit, left))
        self.out.flush()
        self.shown = self.n


class _NoEraseCode(object):
    """A stream without chainer's erase-below code (``ESC [J``), which
    PrintReport writes before each row to wipe the bar beneath it."""

    def __init__(self, out):
        self.out = out

    def write(self, text):
        if text != '\033[J':
            self.out.write(text)

    def flush(self):
        self.out.flush()


def report_stream(out=None):
    """The stream for chainer's PrintReport: ``out`` (default: stdout)
    itself on a terminal, else without the cursor code."""
    out = out or sys.stdout
    return out if is_terminal(out) else _NoEraseCode(out)


class _TerminalBar(util.ProgressBar):
    """chainer's redraw-in-place bar with lines given from outside."""

    lines = ()

    def get_lines(self):
        return self.lines


class TrainingProgress(chainer.training.Extension):
    """Progress of training every ``update_interval`` iterations, after
    PrintReport's lines: chainer's bar on a terminal, else one plain line
    ``iteration 40/200 (20.0%), epoch 0.53, 3.10 iters/sec, 00:52 left``.
    Replaces chainer's ProgressBar, which writes cursor codes anywhere and
    'inf iters/sec' at its first report."""

    def __init__(self, update_interval=10, out=None):
        self.update_interval = update_interval
        self.out = out or sys.stdout
        self._bar = _TerminalBar(out=self.out) if is_terminal(self.out) \
            else None
        self._start = None

    def initialize(self, trainer):
        updater = trainer.updater
        self._start = updater.iteration, updater.epoch_detail, time.time()

    def __call__(self, trainer):
        if trainer.updater.iteration % self.update_interval:
            return
        if self._start is None:
            self.initialize(trainer)
        status, rate = self.status(trainer)
        if self._bar is None:
            self.out.write(status + '\n')
            self.out.flush()
            return
        marks = '#' * int(50 * rate)
        self._bar.lines = ['     total [%s%s] %6.2f%%\n' % (
            marks, '.' * (50 - len(marks)), 100 * rate), status + '\n']
        self._bar.update()

    def status(self, trainer):
        """``(line, share done)``."""
        updater = trainer.updater
        length, unit = trainer.stop_trigger.get_training_length()
        iteration, epoch0, start = self._start
        elapsed = time.time() - start
        iters = updater.iteration - iteration
        if unit == 'iteration':
            done, count = updater.iteration, '%d/%d' % (updater.iteration,
                                                        length)
            _, left = _remaining(iters, length - iteration, elapsed)
        else:
            done, count = updater.epoch_detail, '%d' % updater.iteration
            _, left = _remaining(updater.epoch_detail - epoch0,
                                 length - epoch0, elapsed)
        rate = min(done / float(length), 1.0)
        speed = '%.2f' % (iters / elapsed) if iters and elapsed > 0 else '?'
        return ('iteration %s (%.1f%%), epoch %.2f%s, %s iters/sec, %s left'
                % (count, 100 * rate, updater.epoch_detail,
                   '/%g' % length if unit == 'epoch' else '', speed, left),
                rate)

    def finalize(self):
        if self._bar is not None:
            self._bar.close()
