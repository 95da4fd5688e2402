"""Pictures of training and of attention: a trainer extension that draws the
logged terms in one figure of panels, and the drawing of a CAM."""
import collections
import math
import os

import chainer
import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # NOQA

X_LABEL = 'iteration (one update of --batch-size images)'

Panel = collections.namedtuple('Panel', 'title ylabel keys')
Panel.__doc__ = """One panel: ``keys`` of the log (``main/...`` drawn as
train, ``validation/main/...`` as validation), its title and y-axis label
(with the unit)."""


# title and y-axis label (unit) of each logged term
TERMS = {
    'loss': ('total: weighted sum of the terms', 'loss'),
    'seg': ('L_seg: softmax cross-entropy', 'nats per labelled pixel'),
    'cl': ('L_cl: sigmoid cross-entropy', 'nats per (image, class)'),
    'am': ('L_am: score of the erased class', 'mean score (0 to 1)'),
    'ext': ('L_ext: (CAM - mask)^2', 'per supervised pixel (0 to 1)'),
    'accuracy': ('accuracy of the image labels',
                 'share of (image, class) right'),
    'mean_iu': ('segmentation mean IU (val split)', 'IU (0 to 1)'),
    'pointing': ('pointing game: CAM peak on the class',
                 'share of (image, class)'),
    'energy': ('energy: CAM mass on the class', 'share of the mass'),
    'attention_miou': ('attention mIoU (best tau)', 'IU (0 to 1)'),
    'zero_cams': ('all-zero Grad-CAMs', 'share of (image, class)'),
}


def term_panel(term, keys):
    """The :class:`Panel` of a term of :data:`TERMS` drawn from ``keys``."""
    return Panel(TERMS[term][0], TERMS[term][1], keys)


def save_figure(fig, path, dpi=80):
    """Write ``fig`` to ``path`` atomically and close it."""
    fig.savefig(path + '.tmp.png', dpi=dpi)
    plt.close(fig)
    os.replace(path + '.tmp.png', path)


class PanelPlot(chainer.training.Extension):
    """Draws ``out/<filename>``: one panel per :class:`Panel`, the values
    the LogReport logged (a mean per log interval) against the iteration,
    under the figure title ``title``. Extend it after the LogReport, with
    the LogReport's trigger; it reads the log, so a resumed run draws its
    whole history."""

    def __init__(self, panels, filename, title, log_report='LogReport'):
        self.panels, self.filename, self.title = panels, filename, title
        self.log_report = log_report

    def __call__(self, trainer):
        log = trainer.get_extension(self.log_report).log
        cols = min(3, len(self.panels))
        rows = int(math.ceil(len(self.panels) / float(cols)))
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows),
                                 squeeze=False)
        for ax in axes.ravel()[len(self.panels):]:
            ax.set_visible(False)
        for ax, panel in zip(axes.ravel(), self.panels):
            for key in panel.keys:
                points = [(e['iteration'], e[key]) for e in log if key in e]
                if points:
                    ax.plot(*zip(*points), marker='.', label='validation'
                            if key.startswith('validation/') else 'train')
            if not ax.lines:
                ax.text(0.5, 0.5, 'not logged yet', ha='center',
                        va='center', transform=ax.transAxes, color='gray')
            elif len(panel.keys) > 1:
                ax.legend(fontsize=8)
            ax.set_title(panel.title, fontsize=10)
            ax.set_xlabel(X_LABEL, fontsize=8)
            ax.xaxis.set_major_locator(
                matplotlib.ticker.MaxNLocator(integer=True))
            ax.set_ylabel(panel.ylabel, fontsize=9)
            ax.grid(alpha=0.3)
        fig.suptitle(self.title)
        fig.tight_layout(rect=(0, 0, 1, 0.96))
        save_figure(fig, os.path.join(trainer.out, self.filename))


def show_cam(fig, ax, img, cam, alpha=0.5):
    """A normalised CAM ``(H, W)`` in [0, 1] over ``img`` with a colour
    bar; an all-zero map (Grad-CAM found nothing for the class) is written
    as such rather than drawn as a flat overlay."""
    ax.imshow(img)
    mappable = matplotlib.cm.ScalarMappable(
        matplotlib.colors.Normalize(0, 1), 'jet')
    if np.any(cam):
        mappable = ax.imshow(cam, cmap='jet', vmin=0, vmax=1, alpha=alpha)
    else:
        ax.text(0.5, 0.5, 'all-zero CAM', ha='center', va='center',
                transform=ax.transAxes, color='white', fontsize=9,
                bbox=dict(facecolor='black', alpha=0.7, linewidth=0))
    fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04)
