#!/usr/bin/env python
"""Grad-CAM before (--pretrained) and after (--trained) GAIN, per image.

For each image ``--out/<id>.png`` shows the image, its ground truth (VOC
palette), the normalised Grad-CAM of each shown class for both models
overlaid on the image (titles: class and sigmoid score) and the predicted
segmentation of the trained model. ``--out/overview.png`` puts up to 6
images in rows: image | CAM before | CAM after (the class scored highest by
the trained model).

Classes shown: the ground-truth classes of each dataset image (restricted
to ``--classes``; images with none of them are skipped), or, for a folder
of unlabelled images (``--images DIR``, jpg/png), the ``--top`` classes the
trained model scores highest (among ``--classes`` if given).
``--save-cams`` also writes ``--out/cams/<id>.npz`` with ``before`` and
``after`` ``(C, H, W)`` float32 maps in [0, 1], ``classes`` ``(C,)`` label
values, ``class_names`` and the sigmoid ``scores_before``/``scores_after``
``(C,)``.
"""
import os
import sys

import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.patches as mpatches  # NOQA
import matplotlib.pyplot as plt  # NOQA

from datasets import VOC_CLASS_NAMES, DatasetError, get_dataset  # NOQA
from datasets.voc import voc_palette  # NOQA
from datasets.voc import read_image  # NOQA
from evaluate import DEFAULT_SPLIT, predict, to_input  # NOQA
from metrics import class_cams, gt_classes  # NOQA
from models import load_model  # NOQA
from training import cli, outdir  # NOQA
from training.plots import show_cam  # NOQA
from training.progress import progress  # NOQA

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
PALETTE = np.asarray(voc_palette(), np.uint8).reshape(256, 3)
OVERVIEW_ROWS = 6


def colorize(lbl):
    """``(H, W)`` labels (-1 or 255 = ignore) -> ``(H, W, 3)`` uint8 RGB
    in the VOC palette."""
    return PALETTE[np.where(lbl < 0, 255, lbl).astype(np.uint8)]


def sigmoid(z):
    """Overflow-free logistic function."""
    return 0.5 * (1 + np.tanh(0.5 * np.asarray(z, np.float64)))


def known_class_names(dataset_name, n_class):
    """Class names of a dataset kind without reading its files."""
    if dataset_name == 'shapes':
        from datasets.shapes import CLASS_NAMES as names
    else:
        names = VOC_CLASS_NAMES
    if len(names) != n_class:
        names = ['background'] + ['class%d' % c for c in range(1, n_class)]
    return tuple(names)


def parse_classes(names, class_names):
    """``--classes`` names -> sorted label values ``(C,)``, or None."""
    if not names:
        return None
    unknown = [n for n in names if n not in class_names[1:]]
    if unknown:
        raise cli.UsageError('--classes: unknown class %s (known: %s)'
                             % (', '.join(unknown),
                                ', '.join(class_names[1:])))
    return np.array(sorted(class_names.index(n) for n in names))


def list_images(folder):
    """``[(id, path)]`` of the jpg/png files of a folder, sorted."""
    if not os.path.isdir(folder):
        raise cli.UsageError('--images %s: not a directory' % folder)
    files = sorted(f for f in os.listdir(folder)
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise cli.UsageError('--images %s: no jpg or png files' % folder)
    stems = [os.path.splitext(f)[0] for f in files]
    return [(s if stems.count(s) == 1 else f.replace('.', '_'),
             os.path.join(folder, f)) for s, f in zip(stems, files)]


def examples(files, dataset):
    """``(id, img, lbl or None, error)`` of the images ``files``
    (``[(id, path)]``, see :func:`list_images`) or of a dataset, lazily;
    ``error`` is None, or for an unreadable file the one-line reason (and
    ``img`` None)."""
    if files:
        for image_id, path in files:
            try:
                yield image_id, read_image(path), None, None
            except DatasetError as e:
                yield image_id, None, None, str(e)
        return
    for i in range(len(dataset)):
        img, lbl = dataset[i]
        yield dataset.ids[i], img, lbl, None


def analyse(models, img, lbl, wanted, top, device):
    """CAMs of both models for one image.

    Returns a dict with ``classes`` ``(C,)`` label values, ``cams`` two
    ``(C, H, W)`` arrays (before, after), ``scores`` two ``(C,)`` sigmoid
    scores, ``logits`` ``(C,)`` of the trained model and ``pred``
    ``(H, W)``, the trained model's segmentation.
    """
    x = to_input([img], device)
    outputs = [predict(m, None, device, x) for m in models]
    logits = outputs[1][1][0]
    probs = [sigmoid(out[1][0]) for out in outputs]
    n_class = models[0].n_class
    if lbl is not None:
        classes = gt_classes(lbl, n_class)
        if wanted is not None:
            classes = classes[np.isin(classes, wanted)]
    else:
        candidates = (wanted if wanted is not None
                      else np.arange(1, n_class))
        # rank by logit: sigmoids of confident classes all round to 1
        order = np.argsort(-logits[candidates - 1], kind='stable')
        classes = np.sort(candidates[order[:top]])
    cams = [class_cams(m, x, [classes])[0] for m in models]
    return dict(classes=classes, cams=cams,
                scores=[p[classes - 1] for p in probs],
                logits=logits[classes - 1], pred=outputs[1][0][0])


def _cam_panel(fig, ax, img, cam, title):
    show_cam(fig, ax, img, cam)
    ax.set_title(title, fontsize=9)


def _label_legend(ax, lbl, class_names):
    """Legend of the classes (and the ignore label) present in ``lbl``,
    under the panel."""
    values = np.unique(np.where(lbl < 0, 255, lbl))
    names = dict(enumerate(class_names))
    names[255] = 'ignore'
    ax.legend(handles=[mpatches.Patch(color=PALETTE[v] / 255., label=names[v])
                       for v in values if v in names],
              loc='upper center', bbox_to_anchor=(0.5, 0.0), fontsize=7,
              ncol=2, frameon=False)


def _save(fig, path, dpi=80):
    fig.savefig(path + '.tmp.png', dpi=dpi)
    plt.close(fig)
    os.replace(path + '.tmp.png', path)


def plot_image(path, image_id, img, lbl, result, class_names):
    """One PNG: image, ground truth, CAM before/after per class (rows) and
    the trained model's segmentation."""
    classes = result['classes']
    rows = max(1, len(classes))
    fig, axes = plt.subplots(rows, 5, figsize=(16, 3 * rows + 0.8),
                             squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    axes[0, 0].imshow(img)
    axes[0, 0].set_title(image_id, fontsize=9)
    if lbl is not None:
        axes[0, 1].imshow(colorize(lbl))
        axes[0, 1].set_title('ground truth', fontsize=9)
        _label_legend(axes[0, 1], lbl, class_names)
    else:
        axes[0, 1].text(0.5, 0.5, 'no labels', ha='center', va='center')
    axes[0, 4].imshow(colorize(result['pred']))
    axes[0, 4].set_title('segmentation (after)', fontsize=9)
    _label_legend(axes[0, 4], result['pred'], class_names)
    for r, c in enumerate(classes):
        for col, (when, cam, score) in enumerate(zip(
                ('before', 'after'), result['cams'],
                result['scores']), start=2):
            _cam_panel(fig, axes[r, col], img, cam[r], '%s: %s (%.2f)' % (
                when, class_names[c], score[r]))
    if not len(classes):
        axes[0, 2].text(0.5, 0.5, 'no class to show', ha='center',
                        va='center')
    fig.tight_layout()
    _save(fig, path)


def plot_overview(path, entries, class_names):
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
            _cam_panel(fig, axes[r, col], img, result['cams'][col - 1][k],
                       '%s GAIN: %s (%.2f)' % (
                           when, name, result['scores'][col - 1][k]))
        for ax in axes[r]:
            ax.set_axis_off()
    fig.tight_layout()
    _save(fig, path)


def save_cams(path, result, class_names):
    """``.npz`` of the raw normalised maps of one image (atomic)."""
    with open(path + '.tmp', 'wb') as f:
        np.savez(f, before=result['cams'][0], after=result['cams'][1],
                 classes=result['classes'].astype(np.int32),
                 class_names=np.array([class_names[c]
                                       for c in result['classes']], str),
                 scores_before=result['scores'][0],
                 scores_after=result['scores'][1])
    os.replace(path + '.tmp', path)


def main():
    p = cli.parser(__doc__, training=False)
    p.add_argument('--pretrained', required=True,
                   help='model before GAIN (train_classifier.py output)')
    p.add_argument('--trained', required=True,
                   help='model after GAIN (train_GAIN.py output)')
    p.add_argument('--out', default='runs/visualize',
                   help='output directory')
    count = p.add_mutually_exclusive_group()
    count.add_argument('--num', type=cli.positive(int), default=8,
                       help='number of images')
    count.add_argument('--all', action='store_true', help='every image')
    p.add_argument('--classes', nargs='+', default=None,
                   help='show only these classes (names)')
    p.add_argument('--split', default=None,
                   help='split (default: test for shapes, seg11valid for '
                   'voc)')
    p.add_argument('--images', default=None,
                   help='folder of unlabelled jpg/png images instead of a '
                   'dataset split')
    p.add_argument('--top', type=cli.positive(int), default=2,
                   help='with --images: classes shown per image')
    p.add_argument('--save-cams', action='store_true',
                   help='also write the maps to --out/cams/<id>.npz')
    args = p.parse_args()
    outdir.claim_report(args.out)

    device = cli.get_device(args.device)
    cli.set_seed(args.seed, device)
    dataset = None if args.images else get_dataset(
        args.dataset, args.data_dir, args.split or DEFAULT_SPLIT[args.dataset])
    before, _ = load_model(args.pretrained, require_head=True,
                           n_class=dataset.n_class if dataset else None)
    after, _ = load_model(args.trained, n_class=before.n_class,
                          require_head=True)
    class_names = (dataset.class_names if dataset else
                   known_class_names(args.dataset, before.n_class))
    wanted = parse_classes(args.classes, class_names)
    models = (before, after)
    for m in models:
        m.to_device(device)

    os.makedirs(args.out, exist_ok=True)
    if args.save_cams:
        os.makedirs(os.path.join(args.out, 'cams'), exist_ok=True)
    limit = None if args.all else args.num
    files = list_images(args.images) if args.images else None
    n = len(files) if files else len(dataset)
    shown = progress(n if limit is None or wanted is not None
                     else min(limit, n), 'visualize')
    overview, written, unreadable = [], 0, 0
    for image_id, img, lbl, error in examples(files, dataset):
        if limit is not None and written >= limit:
            break
        shown.update()
        if error:
            print('warning: %s; skipped' % error, file=sys.stderr)
            unreadable += 1
            continue
        result = analyse(models, img, lbl, wanted, args.top, device)
        if wanted is not None and not len(result['classes']):
            continue  # none of the requested classes in this image
        stem = image_id if image_id != 'overview' else 'overview_image'
        plot_image(outdir.output_path(args.out, stem + '.png'), image_id,
                   img, lbl, result, class_names)
        if args.save_cams:
            save_cams(outdir.output_path(args.out, 'cams', stem + '.npz'),
                      result, class_names)
        if len(result['classes']) and len(overview) < OVERVIEW_ROWS:
            overview.append((image_id, img, result))
        written += 1
    shown.close()
    if overview:
        plot_overview(os.path.join(args.out, 'overview.png'), overview,
                      class_names)
    if unreadable and not written:
        raise cli.UsageError('--images %s: none of its %d jpg/png files is '
                             'a readable image' % (args.images, unreadable))
    print('wrote %d images%s to %s%s' % (
        written, ' and overview.png' if overview else '', args.out,
        '; skipped %d unreadable files' % unreadable if unreadable else ''))


if __name__ == '__main__':
    cli.run(main)
