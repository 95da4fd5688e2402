"""What a run says about itself as it goes: the log, the figures of its
logged terms, its attention pictures, the rows it prints and how long it
will take."""
import json
import sys
import time

import chainer
import numpy as np
from chainer.training import extension, extensions

import visualizations
from datasets import deprocess
from models import inference_cams
from models.gain import erased_cams, soft_erase, soft_mask
from runtime.files import output_path, write_text


class LogReport(extensions.LogReport):
    """chainer's LogReport writing ``OUT/log`` through
    :func:`runtime.files.write_text` (chainer's moves a file onto it, which
    follows a link planted at ``log``)."""

    def __init__(self, trigger):
        super().__init__(trigger=trigger, filename=None)

    def __call__(self, trainer):
        n = len(self.log)
        super().__call__(trainer)
        if len(self.log) != n:
            write_text(output_path(trainer.out, 'log'),
                       json.dumps(self.log, indent=4))


#: The logged metrics in percent (the other entries: losses, the learning
#: rate, counts and seconds).
PERCENT = ('accuracy', 'map', 'mean_iu', 'pointing', 'energy',
           'attention_miou', 'zero_cams')


def heading(key):
    """A log key as a column heading: ``val`` for ``validation/main/``,
    nothing for ``main/``, a ``%`` after a metric in percent."""
    name = key.replace('validation/main/', 'val ').replace('main/', '')
    name = name.replace('elapsed_time', 'time (s)').replace('_', ' ')
    return name + (' %' if key.rsplit('/', 1)[-1] in PERCENT else '')


class PrintReport(extensions.PrintReport):
    """chainer's PrintReport under short headings (:func:`heading`), the
    metrics in percent with one decimal, the losses and the learning rate
    with four significant digits, the seconds whole."""

    def __init__(self, entries):
        super().__init__(entries, out=sys.stdout)   # today's, not import's
        heads = [heading(e) for e in entries]
        widths = [max(7, len(h)) for h in heads]
        self._header = '  '.join('%-*s' % (w, h) for w, h in
                                 zip(widths, heads)) + '\n'
        self._templates = [(e, '{:<%d%s}  ' % (w, self.format(e)),
                            ' ' * (w + 2)) for e, w in zip(entries, widths)]

    @staticmethod
    def format(key):
        if key in ('epoch', 'iteration'):
            return 'd'
        if key == 'elapsed_time':
            return '.0f'
        return '.1f' if key.rsplit('/', 1)[-1] in PERCENT else '.4g'


class DurationNote(chainer.training.Extension):
    """Says once, ``after`` updates into the run (after its first, which
    warms up), how long the rest of the run ``stop`` ``(length, unit)``
    takes at their speed, when that is more than ``threshold`` seconds
    (validations not counted)."""
    trigger = 1, 'iteration'
    priority = extension.PRIORITY_READER
    clock = staticmethod(time.monotonic)

    def __init__(self, stop, after=5, threshold=600):
        self.stop, self.after, self.threshold = stop, after, threshold
        self.start = None

    def __call__(self, trainer):
        updater = trainer.updater
        length, unit = self.stop
        done = (updater.iteration if unit == 'iteration'
                else updater.epoch_detail) / float(length)
        now = self.clock()
        if self.start is None:
            self.start = (now, done, updater.iteration)
        t0, done0, it0 = self.start
        if updater.iteration - it0 != self.after or done <= done0:
            return
        left = (now - t0) / (done - done0) * max(0.0, 1 - done)
        if left > self.threshold:
            print('note: this run takes about %.0f minutes more at this speed '
                  '(%.2f s per update; validations not counted)'
                  % (left / 60, (now - t0) / self.after), file=sys.stderr,
                  flush=True)


MAX_ROWS = 8


def attention_rows(model, x, labels, sigma, omega, am_mode='joint'):
    """``[(classes, img, cam, mask, erased_img)]`` (numpy) of each CAM GAIN
    erases (:func:`models.gain.erased_cams`) for images ``x`` ``(N, 3, H,
    W)`` and labels ``(N, K)``; ``classes``: the CAM's columns of
    ``labels``."""
    to_cpu = chainer.backend.CpuDevice().send
    xp = model.xp
    image, targets = erased_cams(to_cpu(labels), am_mode, x.dtype)
    if not len(image):
        return []
    x = x[xp.asarray(image)]
    cam = inference_cams(model, x, xp.asarray(targets))
    mask = soft_mask(cam, sigma, omega)
    with chainer.no_backprop_mode():
        erased = soft_erase(x, cam, sigma, omega).array
    cam, mask, erased, x = (to_cpu(v) for v in (cam, mask, erased, x))
    return [(np.flatnonzero(targets[i]), deprocess(x[i]), cam[i], mask[i],
             deprocess(erased[i])) for i in range(len(x))]


class AttentionSnapshot(chainer.training.Extension):
    """Writes ``out/attention/iter_<N>.png`` (and the TensorBoard image
    ``attention``): a row per CAM GAIN erases of fixed ``examples`` ``(x,
    label_map, labels, ...)``, at most :data:`MAX_ROWS`, named by
    ``class_names`` (background first)."""

    def __init__(self, model, examples, sigma=0.5, omega=10.0,
                 am_mode='joint', class_names=None, tensorboard=None):
        self.model = model
        self.tensorboard = tensorboard
        self.x = np.stack([e[0] for e in examples])
        self.labels = np.stack([e[2] for e in examples])
        self.sigma, self.omega, self.am_mode = sigma, omega, am_mode
        self.class_names = class_names or ['background'] + [
            'class %d' % c for c in range(1, self.labels.shape[1] + 1)]

    def __call__(self, trainer):
        device = self.model.device
        rows = attention_rows(self.model, device.send(self.x),
                              device.send(self.labels), self.sigma,
                              self.omega, self.am_mode)[:MAX_ROWS]
        named = [(' + '.join(self.class_names[c + 1] for c in classes),
                  img, cam, mask, erased)
                 for classes, img, cam, mask, erased in rows]
        it = trainer.updater.iteration
        path = output_path(trainer.out, 'attention', 'iter_%06d.png' % it)
        visualizations.save_figure(visualizations.attention_grid_figure(
            named, 'iteration %d, --am-mode %s' % (it, self.am_mode)), path)
        if self.tensorboard is not None:
            self.tensorboard.add_image_file(trainer, 'attention', path)


class PanelPlot(extension.Extension):
    """Draws ``out/<filename>``, a panel per :class:`visualizations.Panel`
    of the logged values against the iteration, from the LogReport's log
    (a resumed run draws its whole history). By hand: chainer's
    PlotReport draws one axes per file, without titles and units."""

    def __init__(self, panels, filename, title, log_report='LogReport'):
        self.panels, self.filename, self.title = panels, filename, title
        self.log_report = log_report

    def __call__(self, trainer):
        log = trainer.get_extension(self.log_report).log
        visualizations.save_figure(
            visualizations.log_figure(log, self.panels, self.title),
            output_path(trainer.out, self.filename))
