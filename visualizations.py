"""The pictures of the toolkit, and the one place that draws: CAM
overlays, label maps, training curves, attention grids and the pages of
visualize.py. Each ``*_figure`` function returns a matplotlib figure;
:func:`save_figure` writes one atomically and closes it."""
import collections
import functools
import math

import matplotlib
import numpy as np
import PIL.Image

matplotlib.use('Agg')
# Text drawn here (class names, image ids, model names) is never parsed as
# math: a '$' in a name is a '$'.
matplotlib.rcParams['text.parse_math'] = False
import matplotlib.patches as mpatches  # NOQA: E402
import matplotlib.pyplot as plt  # NOQA: E402

from datasets.voc import voc_palette  # NOQA: E402
from runtime.files import atomic_write  # NOQA: E402

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
                 '% of (image, class) right'),
    'mean_iu': ('segmentation mean IU (val split)', 'IU (%)'),
    'map': ('classification mAP (val split)', 'mean AP (%)'),
    'pointing': ('pointing game (exact, 0 px): CAM peak on the class',
                 '% of (image, class)'),
    'energy': ('energy: CAM mass on the class', '% of the mass'),
    'attention_miou': ('attention mIoU (best tau)', 'IU (%)'),
    'zero_cams': ('all-zero Grad-CAMs', '% of (image, class)'),
}


def term_panel(term, keys):
    """The :class:`Panel` of a term of :data:`TERMS` drawn from ``keys``."""
    return Panel(TERMS[term][0], TERMS[term][1], keys)


def save_figure(fig, path, dpi=80):
    """Write ``fig`` to ``path`` (its extension names the format)
    atomically and close it."""
    with atomic_write(path, 'wb') as f:
        fig.savefig(f, format=path.rsplit('.', 1)[-1], dpi=dpi)
    plt.close(fig)


def show_cam(fig, ax, img, cam, alpha=0.5, title=None):
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
    if title is not None:
        ax.set_title(title, fontsize=9)


@functools.lru_cache(maxsize=1)
def palette():
    """The VOC palette, ``(256, 3)`` uint8 RGB."""
    return np.asarray(voc_palette(), np.uint8).reshape(256, 3)


def colorize(label_map):
    """``(H, W)`` labels (-1 or 255 = ignore) -> ``(H, W, 3)`` uint8 RGB
    in the VOC palette."""
    return palette()[np.where(label_map < 0, 255, label_map).astype(np.uint8)]


def save_png(path, picture):
    """Write a PNG atomically: ``(H, W)`` uint8 labels in the VOC palette
    (mode P), or an ``(H, W, 3)`` uint8 RGB picture."""
    png = PIL.Image.fromarray(picture, mode='P' if picture.ndim == 2
                              else 'RGB')
    if picture.ndim == 2:
        png.putpalette(voc_palette())
    with atomic_write(path, 'wb') as f:
        png.save(f, format='PNG')


def overlay(img, label_map, alpha=0.55):
    """``(H, W, 3)`` uint8: ``label_map`` in the VOC palette over ``img``."""
    return ((1 - alpha) * img + alpha * colorize(label_map)).astype(np.uint8)


def heat_map(img, cam, alpha=0.5):
    """``(H, W, 3)`` uint8: a normalised CAM ``(H, W)`` in [0, 1] in the jet
    colour map over ``img``."""
    jet = matplotlib.colormaps['jet'](cam)[..., :3] * 255
    return ((1 - alpha) * img + alpha * jet).astype(np.uint8)


def _legend_handles(label_maps, class_names):
    """A patch per class (and the ignore label) present in ``label_maps``."""
    values = np.unique(np.concatenate([
        np.where(m < 0, 255, m).ravel() for m in label_maps]))
    names = dict(enumerate(class_names))
    names[255] = 'ignore'
    return [mpatches.Patch(color=palette()[v] / 255., label=names[v])
            for v in values if v in names]


def _label_panel(ax, label_map, title, class_names):
    """``label_map`` in the VOC palette under ``title``, with a legend of
    the classes (and the ignore label) present below it."""
    ax.imshow(colorize(label_map))
    ax.set_title(title, fontsize=9)
    ax.legend(handles=_legend_handles([label_map], class_names),
              loc='upper center', bbox_to_anchor=(0.5, 0.0), fontsize=7,
              ncol=2, frameon=False)


def log_figure(log, panels, title):
    """One panel per :class:`Panel`: the values of a LogReport's ``log``
    (a mean per log interval) against the iteration, under ``title``."""
    cols = min(3, len(panels))
    rows = int(math.ceil(len(panels) / float(cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows),
                             squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    for ax, panel in zip(axes.ravel(), panels):
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
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def pseudo_label_figure(rows, class_names, title):
    """make_pseudo_labels.py's preview: a row per ``(id, img, label,
    label_map or None)``, the image, its pseudo label over it and its
    ground truth over it (ignore: the palette's cream), one legend."""
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.5 * len(rows) + 1),
                             squeeze=False)
    for r, (image_id, img, label, truth) in enumerate(rows):
        for ax, picture, name in zip(axes[r], (
                img, overlay(img, label),
                None if truth is None else overlay(img, truth)),
                (image_id, 'pseudo label', 'ground truth')):
            ax.set_axis_off()
            ax.set_title(name, fontsize=9)
            if picture is None:
                ax.text(0.5, 0.5, 'no mask', ha='center', va='center')
            else:
                ax.imshow(picture)
    fig.legend(handles=_legend_handles(
        [m for _, _, label, truth in rows for m in (label, truth)
         if m is not None], class_names),
        loc='lower center', ncol=4, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.6 / fig.get_figheight(), 1,
                           1 - 0.4 / fig.get_figheight()))
    return fig


def attention_grid_figure(rows, title=''):
    """One row per CAM, named by its class: image | CAM | mask | erased
    image. ``rows``: ``(name, img, cam, mask, erased_img)``."""
    if not rows:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.text(0.5, 0.5, 'no image with a class to erase', ha='center',
                va='center')
        ax.set_axis_off()
    else:
        fig, axes = plt.subplots(len(rows), 4, figsize=(9, 2.2 * len(rows)),
                                 squeeze=False)
    for r, (name, img, cam, mask, erased) in enumerate(rows):
        axes[r, 0].imshow(img)
        axes[r, 0].set_title(name, fontsize=10, fontweight='bold')
        show_cam(fig, axes[r, 1], img, cam, alpha=0.6)
        axes[r, 2].imshow(img)
        axes[r, 2].imshow(mask, cmap='gray', vmin=0, vmax=1, alpha=0.6)
        axes[r, 3].imshow(erased)
        for c, ax in enumerate(axes[r]):
            ax.set_axis_off()
            if r == 0 and c:
                ax.set_title(('', 'Grad-CAM', 'mask T', 'erased I*')[c])
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))
    return fig


def image_figure(image_id, img, label_map, result, class_names):
    """visualize.py's page of one image: the image, its ground truth, the
    CAMs before and after GAIN of each class (rows) and the trained
    model's segmentation; ``result`` as ``visualize.analyse`` returns."""
    classes = result['classes']
    rows = max(1, len(classes))
    fig, axes = plt.subplots(rows, 5, figsize=(16, 3 * rows + 0.8),
                             squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    axes[0, 0].imshow(img)
    axes[0, 0].set_title(image_id, fontsize=9)
    if label_map is not None:
        _label_panel(axes[0, 1], label_map, 'ground truth', class_names)
    else:
        axes[0, 1].text(0.5, 0.5, 'no labels', ha='center', va='center')
    _label_panel(axes[0, 4], result['pred'], 'segmentation (after)',
                 class_names)
    for r, c in enumerate(classes):
        for col, (when, cam, score) in enumerate(zip(
                ('before', 'after'), result['cams'],
                result['scores']), start=2):
            show_cam(fig, axes[r, col], img, cam[r], title='%s: %s (%.1f %%)'
                     % (when, class_names[c], 100 * score[r]))
    if not len(classes):
        axes[0, 2].text(0.5, 0.5, 'no class to show', ha='center',
                        va='center')
    fig.tight_layout()
    return fig


def overview_figure(entries, class_names):
    """Rows ``image | CAM before | CAM after`` of ``entries``: ``(id, img,
    result)``, each at its class scored highest after GAIN."""
    fig, axes = plt.subplots(len(entries), 3,
                             figsize=(9.5, 3 * len(entries)), squeeze=False)
    for r, (image_id, img, result) in enumerate(entries):
        k = int(np.argmax(result['logits']))
        name = class_names[result['classes'][k]]
        axes[r, 0].imshow(img)
        axes[r, 0].set_title(image_id, fontsize=9)
        for col, when in ((1, 'before'), (2, 'after')):
            show_cam(fig, axes[r, col], img, result['cams'][col - 1][k],
                     title='%s GAIN: %s (%.1f %%)' % (
                         when, name, 100 * result['scores'][col - 1][k]))
        for ax in axes[r]:
            ax.set_axis_off()
    fig.tight_layout()
    return fig


def attention_curves_figure(results):
    """Attention mIoU against tau, one line per model of ``results``
    (``{name: evaluate.py metrics}``), the best tau marked."""
    fig, ax = plt.subplots(figsize=(6, 4))
    fixed = None
    for name, m in results.items():
        curve = m['attention_curve']
        line, = ax.plot(curve['tau'], [100 * v for v in curve['miou']],
                        marker='.', label=name)
        ax.plot([m['attention_tau']], [100 * m['attention_miou']], 'o',
                color=line.get_color(), markersize=9, fillstyle='none')
        fixed = m['attention_fixed_tau']
    if fixed is not None:
        ax.axvline(fixed, color='gray', linestyle='--', linewidth=1,
                   label='fixed tau %.2f' % fixed)
    return _tau_axes(fig, ax, fontsize=8)


def _tau_axes(fig, ax, **legend):
    """The axes of attention mIoU against tau, labelled, with a legend."""
    ax.set_xlabel('tau (normalised CAM threshold)')
    ax.set_ylabel('attention mIoU (%)')
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(**legend)
    fig.tight_layout()
    return fig


def tau_curves_figure(curves, taus, sigma=None):
    """Attention mIoU against tau of each row: ``curves`` ``{name: (tune
    curve, test curve)}``, each ``(T,)`` over ``taus``; tune dashed, test
    solid, ``sigma`` marked."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (tune, test) in curves.items():
        line, = ax.plot(taus, 100 * np.asarray(test), marker='.',
                        label='%s (test)' % name)
        ax.plot(taus, 100 * np.asarray(tune), linestyle='--',
                color=line.get_color(), linewidth=1,
                label='%s (tune)' % name)
    if sigma is not None:
        ax.axvline(sigma, color='gray', linestyle=':', linewidth=1,
                   label='sigma %.2f' % sigma)
    return _tau_axes(fig, ax, fontsize=7, ncol=2)


def differences_figure(differences, title):
    """One panel per comparison ``{'b - a': {key: paired difference}}``:
    each metric's mean difference with its 95 % interval (bar) and every
    seed's difference (dots), 0 marked; ``title(key)`` names a metric."""
    names = list(differences)
    fig, axes = plt.subplots(len(names), 1, squeeze=False,
                             figsize=(7.5, 1.0 + 0.42 * sum(
                                 len(d) for d in differences.values()) +
                                 0.5 * len(names)))
    for ax, name in zip(axes[:, 0], names):
        items = list(differences[name].items())
        for y, (key, d) in enumerate(items):
            lo, hi = d['ci95']
            colour = 'tab:green' if d['shown'] else 'tab:gray'
            ax.plot([lo, hi], [y, y], color=colour, linewidth=3)
            ax.plot(d['per_seed'], [y] * len(d['per_seed']), 'k.',
                    markersize=4)
            ax.plot([d['mean']], [y], 'o', color=colour)
        ax.axvline(0, color='black', linewidth=0.8)
        ax.set_yticks(range(len(items)))
        ax.set_yticklabels([title(k) for k, _ in items], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(name, fontsize=10)
        ax.grid(axis='x', alpha=0.3)
    axes[-1, 0].set_xlabel('difference (points; AUC x 100): 95 % interval '
                           '(bar), seeds (dots), green: shown', fontsize=9)
    fig.tight_layout()
    return fig
