#!/usr/bin/env python
"""Grad-CAM before (--pretrained) and after (--trained) GAIN, per image.

For each image ``--out/<id>.png`` (``<id>_2.png``... where an earlier page
or the overview took the name) shows the image, its ground truth, the
normalised Grad-CAM of each shown class for both models over the image
(titled with the sigmoid score in percent) and the trained model's
segmentation. ``--out/overview.png``: up to 6 rows image | CAM before |
CAM after, of the class the trained model scores highest.

Classes shown: the ground-truth classes of each dataset image within
``--classes`` (images with none are skipped), or, for a folder of jpg/png
images (``--images``; other files are skipped with a warning), those the
trained model scores above 50 %, at most ``--top``, at least its top one.
``--save-cams`` also writes ``--out/cams/<id>.npz``: ``before`` and
``after`` ``(C, H, W)`` float32 maps in [0, 1], ``classes`` ``(C,)`` label
values, ``class_names`` and the sigmoid ``scores_before``/``scores_after``
``(C,)``. ``--out`` may not be, hold or lie inside the images' folder or
the dataset, nor hold a model file.
"""
import sys

import numpy as np

import datasets
from datasets import TEST_SPLIT, get_dataset, preprocess_batch
from datasets.folder import known_class_names, list_images, read_images
from metrics.classification import scored_classes, sigmoid
from tqdm import tqdm

from models import class_cams
from models.io import load_model
from runtime import cli, flags, outdir
from runtime.device import get_device, set_seed
from runtime.errors import UsageError
from runtime.files import atomic_write, output_path
from visualizations import image_figure, overview_figure, save_figure

OVERVIEW_ROWS = 6


def parse_classes(names, class_names):
    """``--classes`` names -> sorted label values ``(C,)``, or None."""
    if not names:
        return None
    unknown = [n for n in names if n not in class_names[1:]]
    if unknown:
        raise UsageError('--classes: unknown class %s (known: %s)' % (
            ', '.join(unknown), ', '.join(class_names[1:])))
    return np.array(sorted(class_names.index(n) for n in names))


def examples(files, dataset, max_pixels):
    """``(id, img, label_map or None, classes or None, error)`` of the
    images ``files`` (:func:`datasets.folder.read_images`) or of a dataset
    (``classes``: the label values of the image's labels), lazily."""
    if files:
        for image_id, img, error in read_images(files, max_pixels):
            yield image_id, img, None, None, error
        return
    for i in range(len(dataset)):
        img, label_map, labels = dataset[i]
        yield (dataset.ids[i], img, label_map, np.flatnonzero(labels) + 1,
               None)


def analyse(models, img, classes, wanted, top):
    """CAMs of both models for one image, of the classes shown (module
    docstring): a dict of ``classes`` ``(C,)`` label values, ``cams`` two
    ``(C, H, W)`` (before, after), ``scores`` two ``(C,)`` sigmoid scores,
    ``logits`` ``(C,)`` and ``pred`` ``(H, W)`` of the trained model."""
    x = models[0].device.send(preprocess_batch([img]))
    outputs = [m.predict(x) for m in models]
    logits = outputs[1][1][0]
    probs = [sigmoid(out[1][0]) for out in outputs]
    if classes is None:
        classes = scored_classes(logits, top, wanted)
    elif wanted is not None:
        classes = classes[np.isin(classes, wanted)]
    cams = [class_cams(m, x, [classes])[0] for m in models]
    return dict(classes=classes, cams=cams,
                scores=[p[classes - 1] for p in probs],
                logits=logits[classes - 1], pred=outputs[1][0][0])


def save_cams(path, result, class_names):
    """``.npz`` of the raw normalised maps of one image (atomic)."""
    with atomic_write(path, 'wb') as f:
        np.savez(f, before=result['cams'][0], after=result['cams'][1],
                 classes=result['classes'].astype(np.int32),
                 class_names=np.array([class_names[c]
                                       for c in result['classes']], str),
                 scores_before=result['scores'][0],
                 scores_after=result['scores'][1])


def parse_args():
    p = flags.parser(__doc__, training=False)
    datasets.add_flags(p)
    p.add_argument('--pretrained', required=True,
                   help='model before GAIN (train_classifier.py output)')
    p.add_argument('--trained', required=True,
                   help='model after GAIN (train_GAIN.py output)')
    p.add_argument('--out', default='runs/visualize',
                   help='output directory')
    count = p.add_mutually_exclusive_group()
    count.add_argument('--num', type=int, default=8,
                       help='number of images')
    count.add_argument('--all', action='store_true', help='every image')
    p.add_argument('--classes', nargs='+', default=None,
                   help='show only these classes (names)')
    p.add_argument('--split', default=None,
                   help='split (default: %s)' % ', '.join(
                       '%s for %s' % (s, d) for d, s in TEST_SPLIT.items()))
    p.add_argument('--images', default=None,
                   help='folder of jpg/png images instead of a split')
    p.add_argument('--top', type=int, default=3,
                   help='with --images: the most classes shown per image')
    p.add_argument('--save-cams', action='store_true',
                   help='also write the maps to --out/cams/<id>.npz')
    return p.parse_args()


def page_name(image_id, taken):
    """The page of ``image_id``: ``<id>``, or ``<id>_2``, ``<id>_3``... when
    an earlier page or ``overview`` took it; added to ``taken``."""
    name, k = image_id, 1
    while name in taken:
        k += 1
        name = '%s_%d' % (image_id, k)
    taken.add(name)
    return name


def write_pages(args, models, files, dataset, wanted, class_names):
    """Write a page (and with ``--save-cams`` the maps) per image; returns
    ``(overview rows, pages written, unreadable files)``."""
    limit = None if args.all else args.num
    n = len(files) if files else len(dataset)
    with tqdm(total=n if limit is None or wanted is not None
              else min(limit, n), desc='visualize', unit='image') as shown:
        overview, taken, unreadable = [], {'overview'}, 0
        for image_id, img, label_map, classes, error in examples(
                files, dataset, args.max_image_pixels):
            if limit is not None and len(taken) > limit:
                break
            shown.update()
            if error:
                tqdm.write('warning: %s; skipped' % error, file=sys.stderr)
                unreadable += 1
                continue
            result = analyse(models, img, classes, wanted, args.top)
            if wanted is not None and not len(result['classes']):
                continue  # none of the requested classes in this image
            stem = page_name(image_id, taken)
            save_figure(image_figure(image_id, img, label_map, result,
                                     class_names),
                        output_path(args.out, stem + '.png'))
            if args.save_cams:
                save_cams(output_path(args.out, 'cams', stem + '.npz'),
                          result, class_names)
            if len(result['classes']) and len(overview) < OVERVIEW_ROWS:
                overview.append((image_id, img, result))
    return overview, len(taken) - 1, unreadable


def main():
    args = parse_args()
    dataset = None if args.images else get_dataset(
        args.dataset, args.data_dir, args.split or TEST_SPLIT[args.dataset],
        layout=args.voc_layout, max_pixels=args.max_image_pixels)
    outdir.claim(args.out, outdir.names('overview.png', dirs=('cams',)), [
        ('--images', args.images, 'dir'),
        ('--data-dir', dataset and dataset.data_dir, 'dir'),
        ('--pretrained', args.pretrained, 'file'),
        ('--trained', args.trained, 'file')])
    device = get_device(args.device)
    set_seed(args.seed, device)
    before, _ = load_model(args.pretrained, require_head=True,
                           n_class=dataset.n_class if dataset else None)
    after, _ = load_model(args.trained, n_class=before.n_class,
                          require_head=True)
    class_names = (dataset.class_names if dataset else
                   known_class_names(args.dataset, before.n_class))
    wanted = parse_classes(args.classes, class_names)
    for m in (before, after):
        m.to_device(device)
    files = list_images(args.images) if args.images else None
    overview, written, unreadable = write_pages(
        args, (before, after), files, dataset, wanted, class_names)
    if overview:
        save_figure(overview_figure(overview, class_names),
                    output_path(args.out, 'overview.png'))
    if unreadable and not written:
        raise UsageError('--images %s: none of its %d jpg/png files is '
                         'a readable image' % (args.images, unreadable))
    outdir.write_config(args.out, args)
    print('wrote %d images%s to %s%s' % (
        written, ' and overview.png' if overview else '', args.out,
        '; skipped %d unreadable files' % unreadable if unreadable else ''))


if __name__ == '__main__':
    cli.run(main)
