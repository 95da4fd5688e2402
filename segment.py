#!/usr/bin/env python
"""Segment your own images with a model: for each jpg/png file of
``--images`` (other entries and unreadable images are skipped with a
warning) it writes

* ``OUT/labels/<id>.png``: the model's segmentation (per-pixel argmax), a
  palette PNG (mode P, VOC palette) of the class indices, background 0;
* ``OUT/overlays/<id>.png``: that segmentation in colour over the image;
* with ``--cams``, for the classes the model scores above 50 % (at least
  its top one): ``OUT/cams/<id>.npz`` with ``cams`` ``(C, H, W)`` float32
  normalised Grad-CAMs in [0, 1], ``classes`` ``(C,)`` their class indices,
  ``class_names`` and ``scores`` ``(C,)`` (sigmoid probabilities), and a
  heat map ``OUT/cams/<id>_<class>.png`` of each over the image;
* ``OUT/config.json``, with the class names: ``--dataset``'s, or
  ``classN`` for a model of another number of classes.

``<id>`` is the file's name without its extension (``a_jpg`` where two
files share a name). ``--out`` may not be, hold or lie inside
``--images``, nor hold the model file.
"""
import os
import sys

import numpy as np
from tqdm import tqdm

from datasets import DATASETS, MAX_IMAGE_PIXELS, preprocess_batch
from datasets.folder import known_class_names, list_images, read_images
from metrics.classification import scored_classes, sigmoid
from models import class_cams
from models.io import load_model
from runtime import cli, flags, outdir
from runtime.device import get_device, set_seed
from runtime.errors import UsageError
from runtime.files import atomic_write, output_path
from visualizations import heat_map, overlay, save_png

OUTPUTS = outdir.names(dirs=('labels', 'overlays', 'cams'))


def parse_args():
    p = flags.parser(__doc__, training=False)
    p.add_argument('--modelfile', required=True, help='the model (npz)')
    p.add_argument('--images', required=True,
                   help='folder of jpg/png images')
    p.add_argument('--out', required=True, help='output directory')
    p.add_argument('--dataset', default='shapes', choices=DATASETS,
                   help='whose class names the model predicts')
    p.add_argument('--max-image-pixels', type=int, default=MAX_IMAGE_PIXELS,
                   help='largest image read, width x height')
    p.add_argument('--cams', action='store_true',
                   help='also write the Grad-CAMs of the classes the model '
                   'scores above 50 %% (npz and heat maps)')
    p.add_argument('--top', type=int, default=3,
                   help='with --cams: the most classes per image')
    flags.add_cam_flags(p)
    return p.parse_args()


def segment_image(model, img, args, class_names, image_id):
    """Write the outputs of one image ``(H, W, 3)`` (module docstring)."""
    x = model.device.send(preprocess_batch([img]))
    seg, logits = model.predict(x)
    label = seg[0].astype(np.uint8)
    save_png(output_path(args.out, 'labels', image_id + '.png'), label)
    save_png(output_path(args.out, 'overlays', image_id + '.png'),
             overlay(img, label))
    if not args.cams:
        return
    classes = scored_classes(logits[0], args.top)
    cams = class_cams(model, x, [classes], args.cam_scales, args.flip)[0]
    names = [class_names[c] for c in classes]
    with atomic_write(output_path(args.out, 'cams', image_id + '.npz'),
                      'wb') as f:
        np.savez(f, cams=cams.astype(np.float32),
                 classes=classes.astype(np.int32),
                 class_names=np.array(names, str),
                 scores=sigmoid(logits[0][classes - 1]).astype(np.float32))
    for cam, name in zip(cams, names):
        save_png(output_path(args.out, 'cams', '%s_%s.png' % (image_id, name)),
                 heat_map(img, cam))


def main():
    args = parse_args()
    files = list_images(args.images)
    outdir.claim(args.out, OUTPUTS, [('--images', args.images, 'dir'),
                                     ('--modelfile', args.modelfile, 'file')])
    device = get_device(args.device)
    set_seed(args.seed, device)
    model, _ = load_model(args.modelfile, require_head=args.cams)
    model.to_device(device)
    class_names = known_class_names(args.dataset, model.n_class)
    written = 0
    for image_id, img, error in tqdm(
            read_images(files, args.max_image_pixels), total=len(files),
            desc='segment', unit='image'):
        if error:
            tqdm.write('warning: %s; skipped' % error, file=sys.stderr)
            continue
        segment_image(model, img, args, class_names, image_id)
        written += 1
    if not written:
        raise UsageError('--images %s: none of its %d jpg/png files is a '
                         'readable image' % (args.images, len(files)))
    outdir.write_config(args.out, args, n_class=model.n_class,
                        class_names=list(class_names))
    print('segmented %d of %d images: %s, %s%s' % (
        written, len(files), os.path.join(args.out, 'labels'),
        os.path.join(args.out, 'overlays'),
        ', ' + os.path.join(args.out, 'cams') if args.cams else ''))


if __name__ == '__main__':
    cli.run(main)
