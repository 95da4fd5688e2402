"""TensorBoard event files of a run, written with tensorboardX under
``OUT/tensorboard/<run>/`` (``tensorboard --logdir runs`` shows every run
under ``runs/`` side by side).

tensorboardX opens its event file itself, under a name one can foresee
(``events.out.tfevents.<time>.<host>``): it only ever writes into a
directory its run made (:func:`new_run_dir`, ``mkdir``), never into one it
found, so a link or FIFO planted under ``OUT/tensorboard/`` is never
written through or opened.
"""
import json
import numbers
import os
import time

import numpy as np
import PIL.Image
from chainer.training import extension
from tensorboardX import SummaryWriter

from runtime.files import open_input, output_path

DIRECTORY = 'tensorboard'
# entries of a LogReport's log that are not reported values
NOT_REPORTED = ('epoch', 'iteration', 'elapsed_time')


def new_run_dir(out):
    """The name of a new directory ``out/tensorboard/<time>[-k]``, made
    now with ``mkdir`` (which never takes an existing name)."""
    parent = output_path(out, DIRECTORY, directory=True)
    stamp = time.strftime('%Y%m%d-%H%M%S')
    for k in range(1000):
        name = stamp + ('-%d' % k if k else '')
        try:
            os.mkdir(os.path.join(parent, name))
            return name
        except FileExistsError:
            continue
    raise FileExistsError('no new run directory under %s' % parent)


def config_text(config):
    """A configuration dict as a Markdown code block (TensorBoard renders
    text as Markdown)."""
    return '\n'.join('    ' + line for line in json.dumps(
        config, indent=2, sort_keys=True, default=str).splitlines())


class TensorBoard(extension.Extension):
    """Writes every value the LogReport logged (each ``main/`` and
    ``validation/`` term, ``lr``, ``loss_scale``, ``bad_samples``: a mean
    per log interval) as a scalar against the iteration, the run's
    ``config`` as the text ``config``, and the pictures handed to
    :meth:`add_image_file`.

    Extend it after the LogReport. Its run directory is part of the
    trainer's snapshots: a resumed run writes a second event file there
    that starts after its snapshot's iteration and marks the restart
    (tensorboardX's ``purge_step``), and TensorBoard shows the resumed
    values in place of what a killed process had logged after the
    snapshot, one curve.
    """
    trigger = 1, 'iteration'
    priority = extension.PRIORITY_READER
    name = 'TensorBoard'

    def __init__(self, config, log_report='LogReport'):
        self.config, self.log_report = config, log_report
        self.run = ''              # the run directory, kept on resume
        self._writer = None
        self._logged = 0           # entries of the log written

    def _open(self, trainer):
        """The writer, made at the first call after the first update of
        this process (a snapshot is loaded after every ``initialize``)."""
        if self._writer is not None:
            return self._writer
        resumed = bool(self.run)
        if not resumed:
            self.run = new_run_dir(trainer.out)
        start = trainer.updater.iteration - 1     # the snapshot's iteration
        self._writer = SummaryWriter(
            output_path(trainer.out, DIRECTORY, self.run, directory=True),
            purge_step=start + 1 if resumed else None,
            filename_suffix='.%d' % os.getpid())
        log = trainer.get_extension(self.log_report).log
        self._logged = (sum(1 for e in log if e['iteration'] <= start)
                        if resumed else 0)
        self._writer.add_text('config', config_text(self.config), start)
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
        with open_input(path, 'image') as f, PIL.Image.open(f) as image:
            pixels = np.asarray(image.convert('RGB'))
        writer = self._open(trainer)
        writer.add_image(tag, pixels, trainer.updater.iteration,
                         dataformats='HWC')
        writer.flush()

    def serialize(self, serializer):
        try:
            self.run = str(serializer('run', self.run))
        except KeyError:    # a snapshot of a run without --tensorboard
            pass

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
    """``{tag: markdown}`` (e.g. a results table) as the texts of step 0
    in a new run directory under ``out/tensorboard``."""
    with SummaryWriter(os.path.join(out, DIRECTORY, new_run_dir(out))) as w:
        for tag, text in texts.items():
            w.add_text(tag, text, 0)
