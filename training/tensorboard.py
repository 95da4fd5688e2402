"""TensorBoard event files of a run, written with tensorboardX under
``OUT/tensorboard`` (``tensorboard --logdir runs`` shows every run under
``runs/`` side by side), and a local TensorBoard server to read them
back."""
import contextlib
import glob
import json
import numbers
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import numpy as np
import PIL.Image
from chainer.training import extension
from tensorboardX import SummaryWriter

from runtime.outdir import output_path

DIRECTORY = 'tensorboard'
# entries of a LogReport's log that are not reported values
NOT_REPORTED = ('epoch', 'iteration', 'elapsed_time')


def _code_block(text):
    """``text`` as a Markdown code block (TensorBoard renders text as
    Markdown)."""
    return '\n'.join('    ' + line for line in text.splitlines())


class TensorBoard(extension.Extension):
    """Writes ``OUT/tensorboard/events.out.tfevents.*``: every value the
    LogReport logged (each ``main/`` and ``validation/`` term, ``lr``,
    ``loss_scale``, ``bad_samples``: a mean per log interval) as a scalar
    against the iteration, the run's ``config.json`` as the text
    ``config``, and the pictures handed to :meth:`add_image_file`.

    Extend it after the LogReport. A resumed run adds an event file that
    starts after its snapshot's iteration and marks the restart
    (tensorboardX's ``purge_step``): TensorBoard shows the resumed values
    in place of what a killed process had logged after the snapshot, one
    curve.
    """
    trigger = 1, 'iteration'
    priority = extension.PRIORITY_READER
    name = 'TensorBoard'

    def __init__(self, log_report='LogReport'):
        self.log_report = log_report
        self._writer = None
        self._logged = 0           # entries of the log written

    def _open(self, trainer):
        """The writer, made at the first call after the first update of
        this process (a snapshot is loaded after every ``initialize``)."""
        if self._writer is not None:
            return self._writer
        directory = output_path(trainer.out, DIRECTORY, directory=True)
        earlier = glob.glob(os.path.join(directory, 'events.out.tfevents.*'))
        start = trainer.updater.iteration - 1     # the snapshot's iteration
        # the number keeps event files of one second in their order
        self._writer = SummaryWriter(
            directory, purge_step=start + 1 if earlier else None,
            filename_suffix='.%03d' % len(earlier))
        log = trainer.get_extension(self.log_report).log
        self._logged = (sum(1 for e in log if e['iteration'] <= start)
                        if earlier else 0)
        config = os.path.join(trainer.out, 'config.json')
        if os.path.exists(config):
            with open(config) as f:
                self._writer.add_text('config', _code_block(f.read()), start)
        return self._writer

    def __call__(self, trainer):
        writer = self._open(trainer)
        log = trainer.get_extension(self.log_report).log
        if len(log) == self._logged:
            return
        for entry in log[self._logged:]:
            for key, value in sorted(entry.items()):
                if key not in NOT_REPORTED and isinstance(
                        value, numbers.Real) and not isinstance(value, bool):
                    writer.add_scalar(key, value, entry['iteration'])
        self._logged = len(log)
        writer.flush()

    def add_image_file(self, trainer, tag, path):
        """The picture in ``path`` (a PNG) as the image ``tag`` of the
        current iteration."""
        with PIL.Image.open(path) as image:
            pixels = np.asarray(image.convert('RGB'))
        writer = self._open(trainer)
        writer.add_image(tag, pixels, trainer.updater.iteration,
                         dataformats='HWC')
        writer.flush()

    def finalize(self):
        if self._writer is not None:
            self._writer.close()


def find(trainer):
    """The trainer's :class:`TensorBoard` extension, None without one."""
    try:
        return trainer.get_extension(TensorBoard.name)
    except ValueError:
        return None


def write_texts(out, texts):
    """``{tag: markdown}`` (e.g. a results table) as the texts of step 0 in
    ``out/tensorboard``; they hide what earlier writes put there."""
    with SummaryWriter(output_path(out, DIRECTORY, directory=True),
                       purge_step=0) as writer:
        for tag, text in texts.items():
            writer.add_text(tag, text, 0)


def config_text(config):
    """A configuration dict as the Markdown of the ``config`` text."""
    return _code_block(json.dumps(config, indent=2, sort_keys=True,
                                  default=str))


@contextlib.contextmanager
def server(logdir, deadline=120):
    """A TensorBoard server over ``logdir`` on 127.0.0.1 at a port the OS
    picks; yields its base URL (``http://127.0.0.1:PORT``) and stops it on
    exit. RuntimeError if it does not start within ``deadline`` seconds."""
    with tempfile.TemporaryFile('w+') as log:
        proc = subprocess.Popen(
            [sys.executable, '-m', 'tensorboard.main', '--logdir', logdir,
             '--host', '127.0.0.1', '--port', '0', '--reload_interval', '1'],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield _started_at(proc, log, deadline)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _started_at(proc, log, deadline):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        log.seek(0)
        output = log.read()
        found = re.search(r'at (http://127\.0\.0\.1:\d+)/', output)
        if found:
            return found.group(1)
        if proc.poll() is not None:
            raise RuntimeError('tensorboard exited with status %d: %s'
                               % (proc.returncode, output.strip()))
        time.sleep(0.1)
    raise RuntimeError('tensorboard did not start within %d s' % deadline)


def fetch(url, path, **query):
    """The body of ``url + path`` with the ``query`` parameters (never
    through a proxy): JSON decoded, bytes for anything else."""
    if query:
        path += '?' + urllib.parse.urlencode(query)
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with direct.open(url + path, timeout=60) as response:
        body = response.read()
        if response.headers.get_content_type() == 'application/json':
            return json.loads(body)
        return body
