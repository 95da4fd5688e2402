"""TensorBoard event files, written with tensorboardX under
``OUT/tensorboard/<run>/``. tensorboardX opens its event file itself,
under a name one can foresee, so it only writes into a directory its run
has just made (:func:`new_run_dir`): a link or FIFO planted under
``OUT/tensorboard/`` is never written through or opened."""
import json
import numbers
import os
import secrets
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
    now."""
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
    """A configuration dict as a Markdown code block."""
    return '\n'.join('    ' + line for line in json.dumps(
        config, indent=2, sort_keys=True, default=str).splitlines())


class TensorBoard(extension.Extension):
    """Writes every value the LogReport logged as a scalar, the run's
    ``config`` as the text ``config`` and the pictures of
    :meth:`add_image_file`. Its run directory is in the snapshots: a
    resumed run writes a second event file there from its snapshot's
    iteration on (``purge_step``), which TensorBoard shows in place of
    what a killed run had logged after the snapshot."""
    trigger = 1, 'iteration'
    priority = extension.PRIORITY_READER
    name = 'TensorBoard'

    def __init__(self, config, log_report='LogReport'):
        self.config, self.log_report = config, log_report
        self.run = ''              # the run directory, kept on resume
        self._writer = None
        self._logged = 0           # entries of the log written

    def _open(self, trainer):
        """The writer, made at the first call (after an update)."""
        if self._writer is not None:
            return self._writer
        resumed = bool(self.run)
        if not resumed:
            self.run = new_run_dir(trainer.out)
        start = trainer.updater.iteration - 1     # the snapshot's iteration
        self._writer = SummaryWriter(
            output_path(trainer.out, DIRECTORY, self.run, directory=True),
            purge_step=start + 1 if resumed else None,
            # a name no earlier writer used, even one of this process in
            # the same second (tensorboardX names files by the second)
            filename_suffix='.%d.%s' % (os.getpid(), secrets.token_hex(4)))
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
        """The PNG ``path`` as the image ``tag`` of this iteration."""
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
    """``{tag: markdown}`` as the texts of step 0 of a new run directory
    under ``out/tensorboard``."""
    with SummaryWriter(os.path.join(out, DIRECTORY, new_run_dir(out))) as w:
        for tag, text in texts.items():
            w.add_text(tag, text, 0)
