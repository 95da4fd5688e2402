#!/usr/bin/env python
"""Pseudo segmentation labels from Grad-CAM attention (weak supervision).

For each image of ``--split`` the normalised CAMs of its image-level
(ground-truth) classes are computed (the classes of its XML or list entry,
or those of its mask; a split needs no mask); a pixel whose highest map is
``>= --high`` takes that class, ``< --low`` is background 0, in between
is 255 (ignore). ``--out`` becomes a VOC-format directory:

* ``SegmentationClass/<id>.png``: palette PNG (mode P, VOC palette);
* ``ImageSets/Segmentation/<split>.txt``;
* ``JPEGImages/<id>.jpg``: symlinks to the source images (copies where
  links are not possible);
* ``class_names.txt``: the source's classes, background first, so that
  ``--dataset voc --data-dir OUT`` reads them with the source's classes;
* ``manifest.txt``: every file above (written first), what a later
  ``--force`` may delete.

``--out`` may not be, hold or lie inside the source dataset, nor hold the
model file. A non-empty ``--out`` is refused, naming what ``--force`` would
delete; ``--force`` deletes only files of an earlier run of this tool
(listed in its manifest.txt), once the new labels are written, and refuses
an ``--out`` holding anything else under the names above.

The pseudo labels' mIoU against the ground truth, counted on the pixels
they label (not 255, nor ignored in the ground truth) of the images with a
mask, and the share of pixels they label are printed and written to
``OUT/pseudo_labels.json``, with the IoU of each class
(``per_class_iou``, fractions; null for a class in neither).

Then train a segmentation network on them, validating on the real labels,
and score it against the ground truth (the script prints these commands
with its paths filled in):

  python train_fcn.py --dataset voc --data-dir OUT --split SPLIT \
      --val-data-dir SOURCE --val-split val --out runs/pseudo_fcn
  python evaluate.py --dataset DATASET --data-dir SOURCE --no-attention \
      --modelfile runs/pseudo_fcn/model.npz --out runs/pseudo_eval
"""
import json
import os
import shutil

import numpy as np
import PIL.Image

import datasets
from datasets import CLASS_NAMES_FILE, batches, get_dataset, preprocess_batch
from datasets.voc import voc_palette
from metrics import confusion_matrix, pseudo_label, segmentation_scores
from tqdm import tqdm

from models import class_cams
from models.io import load_model
from runtime import cli, flags, outdir
from runtime.device import get_device, set_seed
from runtime.errors import DatasetError, UsageError
from runtime.files import (atomic_write, open_input, output_path, temporary,
                           write_text)

NEXT_STEPS = """\
Train an FCN8s on them, validating on the real labels:
  %(python)s train_fcn.py --dataset voc --data-dir %(out)s --split %(split)s \\
      --val-data-dir %(source)s --val-split val --out runs/pseudo_fcn
and score it against the ground truth:
  %(python)s evaluate.py --dataset %(dataset)s --data-dir %(source)s \\
      --no-attention --modelfile runs/pseudo_fcn/model.npz \\
      --out runs/pseudo_eval"""


def write_label_png(path, label):
    """``(H, W)`` uint8 labels -> palette PNG (mode P), atomically."""
    png = PIL.Image.fromarray(label, mode='P')
    png.putpalette(voc_palette())
    with atomic_write(path, 'wb') as f:
        png.save(f, format='PNG')


def link_image(src, dst):
    """``dst``: a symbolic link to ``src`` (absolute), or a copy where
    links are not possible, put in place by a rename."""
    tmp = temporary(dst)
    try:
        os.symlink(os.path.abspath(src), tmp)
        os.replace(tmp, dst)
    except OSError:
        if os.path.lexists(tmp):
            os.remove(tmp)
        with open_input(src, 'image', error=DatasetError) as f, \
                atomic_write(dst, 'wb') as g:
            shutil.copyfileobj(f, g)


def label_scores(hist, n_labelled, n_pixels):
    """Summary of the accumulated ``hist`` of labelled pixels."""
    scores = (segmentation_scores(hist) if hist.sum() else
              dict(mean_iu=None, iu=[None] * len(hist), accuracy=None))
    return dict(mean_iu=scores['mean_iu'], iu=scores['iu'],
                accuracy=scores['accuracy'],
                labelled_share=n_labelled / max(n_pixels, 1),
                labelled_pixels=int(n_labelled), pixels=int(n_pixels))


def write_labels(model, dataset, out, low, high, batch_size):
    """Write the pseudo label of each image of ``dataset`` under ``out``
    (``SegmentationClass/<id>.png``, ``JPEGImages/<id>.jpg`` a link to
    the image); returns their :func:`label_scores` against the ground
    truth."""
    n = dataset.n_class
    hist = np.zeros((n, n), np.int64)
    n_labelled = n_pixels = 0
    index = 0
    shown = tqdm(total=len(dataset), desc='pseudo labels', unit='image')
    for batch in batches(dataset, batch_size):
        classes = [np.flatnonzero(labels) + 1 for _, _, labels in batch]
        x = model.device.send(preprocess_batch([img for img, _, _ in batch]))
        cams = class_cams(model, x, classes)
        for (_, label_map, _), cam, cls in zip(batch, cams, classes):
            image_id = dataset.ids[index]
            label = pseudo_label(cam, cls, low, high)
            write_label_png(output_path(
                out, 'SegmentationClass', image_id + '.png'), label)
            link_image(dataset.image_files[index], output_path(
                out, 'JPEGImages', image_id + '.jpg'))
            labelled = label != 255
            hist += confusion_matrix(np.where(labelled, label_map, -1),
                                     label, n)
            n_labelled += int(labelled.sum())
            n_pixels += label.size
            index += 1
        shown.update(len(batch))
    shown.close()
    return label_scores(hist, n_labelled, n_pixels)


def parse_args():
    p = flags.parser(__doc__, training=False)
    datasets.add_flags(p)
    p.add_argument('--modelfile', required=True,
                   help='model whose Grad-CAM makes the labels (with its '
                   'classification head)')
    p.add_argument('--split', default='train', help='split to label')
    p.add_argument('--out', required=True,
                   help='output VOC-format directory (empty or new)')
    p.add_argument('--force', action='store_true',
                   help='replace what an earlier run of this tool wrote in '
                   '--out, as its manifest.txt lists it (JPEGImages, '
                   'SegmentationClass, ImageSets, class_names.txt, '
                   'config.json, pseudo_labels.json, manifest.txt); the old '
                   'files are deleted only once the new labels are written, '
                   'and an --out holding other files of these names is '
                   'refused')
    p.add_argument('--low', type=float, default=0.3,
                   help='normalised CAM below which a pixel is background')
    p.add_argument('--high', type=float, default=0.6,
                   help='normalised CAM from which a pixel takes the class')
    p.add_argument('--batch-size', type=int, default=8,
                   help='images per forward pass (consecutive images of '
                   'one size)')
    args = p.parse_args()
    if not 0 <= args.low <= args.high <= 1:
        raise UsageError('need 0 <= --low <= --high <= 1, got %g, %g'
                         % (args.low, args.high))
    return args


def main():
    args = parse_args()
    device = get_device(args.device)
    set_seed(args.seed, device)
    dataset = get_dataset(args.dataset, args.data_dir, args.split,
                          layout=args.voc_layout,
                          max_pixels=args.max_image_pixels)
    model, _ = load_model(args.modelfile, n_class=dataset.n_class,
                          require_head=True)
    outdir.claim_dataset(args.out, args.force,
                         [('--data-dir', dataset.data_dir, 'dir'),
                          ('--modelfile', args.modelfile, 'file')])
    model.to_device(device)

    split_name = os.path.splitext(os.path.basename(args.split))[0]
    list_file = os.path.join('ImageSets', 'Segmentation', split_name + '.txt')
    outdir.write_manifest(args.out, [list_file, CLASS_NAMES_FILE,
                                     'config.json', 'pseudo_labels.json'] + [
        os.path.join(d, image_id + ext) for image_id in dataset.ids
        for d, ext in (('SegmentationClass', '.png'), ('JPEGImages', '.jpg'))])

    report = write_labels(model, dataset, args.out, args.low, args.high,
                          args.batch_size)
    for path, lines in ((list_file, dataset.ids),
                        (CLASS_NAMES_FILE, dataset.class_names)):
        write_text(output_path(args.out, path),
                   '\n'.join(lines) + '\n')

    report['per_class_iou'] = dict(zip(dataset.class_names,
                                       report.pop('iu')))
    report.update(modelfile=args.modelfile, dataset=args.dataset,
                  data_dir=dataset.data_dir, split=args.split,
                  low=args.low, high=args.high, images=len(dataset),
                  images_with_mask=int(np.sum(dataset.has_mask)),
                  class_names=list(dataset.class_names))
    outdir.write_config(args.out, args, data_dir=dataset.data_dir)
    write_text(output_path(args.out, 'pseudo_labels.json'),
               json.dumps(report, indent=2))
    miou = report['mean_iu']
    print('%d pseudo labels in %s: mIoU %s on the labelled pixels of the '
          '%d images with a mask, %.2f%% of the pixels labelled (low %g, '
          'high %g)' % (len(dataset), args.out,
                        '-' if miou is None else '%.2f%%' % (100 * miou),
                        report['images_with_mask'],
                        100 * report['labelled_share'], args.low, args.high))
    print(NEXT_STEPS % dict(python=cli.python_command(), out=args.out,
                            split=split_name, source=dataset.data_dir,
                            dataset=args.dataset))


if __name__ == '__main__':
    cli.run(main)
