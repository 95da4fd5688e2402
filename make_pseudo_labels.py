#!/usr/bin/env python
"""Pseudo segmentation labels from Grad-CAM attention (weak supervision).

For each image of ``--split`` the normalised CAMs of its image-level
classes (its XML's or list's, or its mask's) are computed; a pixel whose
highest map is ``>= --high`` takes that class, ``< --low`` is background
0, in between is 255 (ignore). ``--cam-scales`` and ``--flip`` average
the maps of resized and mirrored images (as IRN); ``--crf`` labels every
pixel with a dense CRF instead (``models/crf.py``; its background crosses
the maps at ``--crf-tau``). ``--out`` becomes a VOC-format directory:

* ``SegmentationClass/<id>.png``: palette PNG (mode P, VOC palette);
* ``ImageSets/Segmentation/<split>.txt``;
* ``JPEGImages/<id>.jpg``: symlinks to the source images (copies where
  links are not possible);
* ``class_names.txt``: the source's classes, background first (read by
  ``--dataset voc --data-dir OUT``);
* ``preview.png``: the first images beside their pseudo label and ground
  truth over them;
* ``manifest.txt``: every file above (written first), what a later
  ``--force`` may delete.

``--out`` may not be, hold or lie inside the source dataset, nor hold the
model file. A non-empty ``--out`` is refused; ``--force`` deletes only the
files an earlier run of this tool listed in its manifest.txt, once the new
labels are written.

The labels' mIoU against the ground truth on the pixels they label (not
255, nor ignored in the ground truth) of the images with a mask, and the
share of pixels labelled, are printed (percent) and written to
``OUT/pseudo_labels.json`` with each class's IoU (``per_class_iou``;
fractions; null for a class in neither), then the next command: an FCN8s
trained on the labels, validated on the real ones.

``--crf-grid`` writes no labels but chooses their settings on a tuning
split (``--split tune``; never ``test``) whose images with a mask, in
split order, are cut in two halves. Under each CAM setting of
:data:`CAM_GRID` the labels are made by thresholding at each tau of
``metrics.attention.TAUS`` (``--low tau --high tau``) and by the CRF at
each setting of :data:`CRF_GRID`; the best of each of the four rows (CAMs
x refinement) by mIoU (ignore pixels skipped) on the first half is scored
on the second half. ``OUT/crf_grid.json`` holds the rows (``cams``,
``refinement``, the chosen setting, ``first_half`` and ``second_half``
mIoU, ``per_class_iou`` of the second half, ``flags``: this script's flags
of the setting), ``best`` (the row of the highest first-half mIoU) and
``grid`` (every setting's first-half mIoU).
"""
import argparse
import itertools
import json
import os
import shutil

import numpy as np

import datasets
from datasets import CLASS_NAMES_FILE, batches, get_dataset, preprocess_batch
from metrics import confusion_matrix, pseudo_label, segmentation_scores
from metrics.attention import TAUS
from tqdm import tqdm
from models import class_cams
from models.crf import CRFSettings, refine
from models.io import load_model
from runtime import cli, flags, outdir
from runtime.device import get_device, set_seed
from runtime.errors import DatasetError, UsageError
from runtime.files import (atomic_write, open_input, output_path, temporary,
                           write_text)
from visualizations import pseudo_label_figure, save_figure, save_png

#: ``--low`` and ``--high`` without ``--crf``.
THRESHOLDS = (0.3, 0.6)
#: Images in preview.png.
PREVIEW = 6


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


def image_cams(model, dataset, batch_size, scales=(1.0,), flip=False):
    """``(img, label_map, cams, classes)`` of each image of ``dataset``:
    the normalised Grad-CAMs ``(C, H, W)`` of its image-level classes."""
    with tqdm(total=len(dataset), desc='pseudo labels', unit='image') as bar:
        for batch in batches(dataset, batch_size):
            classes = [np.flatnonzero(labels) + 1 for _, _, labels in batch]
            x = model.device.send(preprocess_batch([b[0] for b in batch]))
            cams = class_cams(model, x, classes, scales, flip)
            for (img, label_map, _), cam, cls in zip(batch, cams, classes):
                yield img, label_map, cam, cls
            bar.update(len(batch))


def label_of(img, cams, classes, low, high, crf=None):
    """``(H, W)`` uint8 pseudo label: CAMs ``(C, H, W)`` thresholded, or
    refined by a dense CRF with ``crf`` (``models.crf.CRFSettings``)."""
    if crf is None:
        return pseudo_label(cams, classes, low, high)
    return refine(img, cams, classes, crf)


def write_labels(model, dataset, out, low, high, batch_size, crf=None,
                 scales=(1.0,), flip=False):
    """Write the pseudo label of each image of ``dataset``, its image link
    and the preview under ``out``; their :func:`label_scores`."""
    n = dataset.n_class
    hist = np.zeros((n, n), np.int64)
    n_labelled = n_pixels = 0
    preview = []
    for index, (img, label_map, cam, cls) in enumerate(image_cams(
            model, dataset, batch_size, scales, flip)):
        image_id = dataset.ids[index]
        label = label_of(img, cam, cls, low, high, crf)
        save_png(output_path(
            out, 'SegmentationClass', image_id + '.png'), label)
        link_image(dataset.image_files[index], output_path(
            out, 'JPEGImages', image_id + '.jpg'))
        labelled = label != 255
        hist += confusion_matrix(np.where(labelled, label_map, -1), label, n)
        n_labelled += int(labelled.sum())
        n_pixels += label.size
        if index < PREVIEW:
            preview.append((image_id, img, label, label_map
                            if dataset.has_mask[index] else None))
    save_figure(pseudo_label_figure(preview, dataset.class_names, (
        'make_pseudo_labels.py: the first %d of %d images' % (
            len(preview), len(dataset)))), output_path(out, 'preview.png'))
    return label_scores(hist, n_labelled, n_pixels)


#: ``(CRFSettings field, default, help)`` of the CRF flags. The defaults
#: scored best on the first half of shapes' tune, seed 0, mean of gain and
#: gain_ext_15 (single-scale CAMs, ``--crf-grid``); each model's own best
#: tau was 0.65 and 0.5, so choose it per model.
CRF_FLAGS = (
    ('tau', 0.6, 'the top CAM where the background score meets it'),
    ('gauss_sxy', 3.0, 'spatial width (pixels) of the Gaussian kernel'),
    ('gauss_compat', 3.0, 'weight of the Gaussian kernel (0: none)'),
    ('bilateral_sxy', 80.0, 'spatial width (pixels) of the bilateral kernel'),
    ('bilateral_srgb', 5.0, 'colour width (0-255) of the bilateral kernel'),
    ('bilateral_compat', 10.0, 'weight of the bilateral kernel (0: none)'),
    ('iterations', 10, 'mean-field iterations'))


#: ``(name, scales, flip)``: the CAMs tried.
CAM_GRID = (('single', (1.0,), False),
            ('multi_flip', (1.0, 0.5, 1.5, 2.0), True))
#: CRF settings tried: ``tau`` x ``(bilateral_sxy, bilateral_srgb)``, the
#: rest as make_pseudo_labels.py's defaults. On the first half of shapes'
#: tune, seed 0, gain: the Gaussian kernel off, or the bilateral weight
#: halved or doubled, moved the mIoU by at most 1.4 points; tau by up to
#: 55, the bilateral widths by up to 25.
CRF_GRID = tuple(CRFSettings(**dict(
    {name: default for name, default, _ in CRF_FLAGS}, tau=tau,
    bilateral_sxy=sxy, bilateral_srgb=srgb)) for tau, sxy, srgb in
    itertools.product((0.5, 0.6, 0.65, 0.7, 0.75, 0.8), (20., 40., 80.),
                      (5., 10.)))


def setting_flags(scales, flip, tau, crf):
    """The make_pseudo_labels.py flags of a setting."""
    out = ['--cam-scales'] + ['%g' % s for s in scales] + (
        ['--flip'] if flip else [])
    if crf is None:
        return out + ['--low', '%g' % tau, '--high', '%g' % tau]
    return out + ['--crf'] + [v for name, _, _ in CRF_FLAGS for v in (
        '--crf-' + name.replace('_', '-'), '%g' % getattr(crf, name))]


def scores(images, tau, crf, n_class):
    """:func:`metrics.segmentation_scores` of the pseudo labels of
    ``images`` (:func:`image_cams`) at ``tau`` or by the CRF ``crf``."""
    hist = np.zeros((n_class, n_class), np.int64)
    for img, label_map, cams, classes in images:
        hist += confusion_matrix(label_map, label_of(
            img, cams, classes, tau, tau, crf), n_class)
    return segmentation_scores(hist)


def choose(first, second, candidates, n_class):
    """The candidate ``(tau, crf)`` of the highest mIoU on ``first``, its
    scores on both halves, and every candidate's first-half mIoU."""
    grid = [(tau, crf, scores(first, tau, crf, n_class)['mean_iu'])
            for tau, crf in candidates]
    tau, crf, best = max(grid, key=lambda g: g[2])
    held_out = scores(second, tau, crf, n_class)
    return (dict(tau=tau, crf=crf._asdict() if crf else None,
                 first_half=best, second_half=held_out['mean_iu'],
                 iu=held_out['iu']),
            [dict(tau=t, crf=c._asdict() if c else None, first_half=m)
             for t, c, m in grid])


def grid_search(model, dataset, batch_size):
    """``--crf-grid`` (module docstring): the four rows, the best and
    the grid."""
    n = dataset.n_class
    rows, grid = {}, []
    for cams_name, scales, flip in CAM_GRID:
        images = [im for im, masked in zip(image_cams(
            model, dataset, batch_size, scales, flip), dataset.has_mask)
            if masked]
        first, second = images[:len(images) // 2], images[len(images) // 2:]
        for refinement, candidates in (
                ('threshold', [(t, None) for t in TAUS]),
                ('crf', [(c.tau, c) for c in CRF_GRID])):
            row, table = choose(first, second, candidates, n)
            row['per_class_iou'] = dict(zip(dataset.class_names,
                                            row.pop('iu')))
            crf = row['crf'] and CRFSettings(**row['crf'])
            rows['%s_%s' % (cams_name, refinement)] = dict(
                row, cams=cams_name, refinement=refinement,
                cam_scales=list(scales), flip=flip,
                flags=setting_flags(scales, flip, row['tau'], crf))
            grid += [dict(g, cams=cams_name) for g in table]
    best = max(rows, key=lambda r: rows[r]['first_half'])
    return dict(rows=rows, best=best, grid=grid)


def parse_args():
    p = flags.parser(__doc__, training=False)
    datasets.add_flags(p)
    p.add_argument('--modelfile', required=True,
                   help='the model whose Grad-CAMs make the labels')
    p.add_argument('--split', default='train', help='split to label')
    p.add_argument('--out', required=True,
                   help='output VOC-format directory (empty or new)')
    p.add_argument('--force', action='store_true',
                   help='replace the files an earlier run listed in '
                   'OUT/manifest.txt, once the new labels are written')
    p.add_argument('--low', type=float, default=None,
                   help='normalised CAM below which a pixel is background '
                   '(default: %g; not with --crf)' % THRESHOLDS[0])
    p.add_argument('--high', type=float, default=None,
                   help='normalised CAM from which a pixel takes the class '
                   '(default: %g; not with --crf)' % THRESHOLDS[1])
    p.add_argument('--batch-size', type=int, default=8,
                   help='images per forward pass')
    flags.add_cam_flags(p)
    p.add_argument('--crf', action='store_true',
                   help='label every pixel with a dense CRF (Kraehenbuehl '
                   '& Koltun 2011) instead of --low and --high')
    for name, default, text in CRF_FLAGS:
        p.add_argument('--crf-' + name.replace('_', '-'), default=default,
                       type=type(default), help='with --crf: ' + text)
    p.add_argument('--crf-grid', action='store_true',
                   help='write no labels but choose the settings on --split '
                   '(see above): OUT/crf_grid.json')
    return checked(p.parse_args())


def checked(args):
    """``(args, crf)``: the flags checked together, ``--low`` and
    ``--high`` resolved, ``crf`` the CRFSettings (None without ``--crf``)."""
    crf = CRFSettings(**{name: getattr(args, 'crf_' + name)
                         for name, _, _ in CRF_FLAGS}) if args.crf else None
    given = [f for f, v in (('--crf', args.crf), ('--low', args.low),
                            ('--high', args.high), ('--flip', args.flip),
                            ('--cam-scales', args.cam_scales != [1.0])) if v]
    if args.crf_grid and given:
        raise UsageError('--crf-grid tries its own settings: drop %s'
                         % ', '.join(given))
    if crf and (args.low, args.high) != (None, None):
        raise UsageError('--low and --high threshold the CAMs; --crf labels '
                         'with the CRF (its background: --crf-tau)')
    if not crf:
        args.low, args.high = (THRESHOLDS[i] if v is None else v
                               for i, v in enumerate((args.low, args.high)))
        if not 0 <= args.low <= args.high <= 1:
            raise UsageError('need 0 <= --low <= --high <= 1, got %g, %g'
                             % (args.low, args.high))
    return args, crf


def main():
    args, crf = parse_args()
    device = get_device(args.device)
    set_seed(args.seed, device)
    dataset = get_dataset(args.dataset, args.data_dir, args.split,
                          layout=args.voc_layout,
                          max_pixels=args.max_image_pixels)
    model, _ = load_model(args.modelfile, n_class=dataset.n_class,
                          require_head=True)
    inputs = [('--data-dir', dataset.data_dir, 'dir'),
              ('--modelfile', args.modelfile, 'file')]
    if not args.crf_grid:
        outdir.claim_dataset(args.out, args.force, inputs)
        model.to_device(device)
        return write_dataset(args, crf, model, dataset)
    if not np.any(dataset.has_mask):
        raise UsageError('--crf-grid scores against masks: split %s has '
                         'none' % args.split)
    outdir.claim(args.out, outdir.names('crf_grid.json'), inputs)
    model.to_device(device)
    write_grid(args, model, dataset)


def write_dataset(args, crf, model, dataset):
    """The pseudo-label dataset under ``--out`` (module docstring), then
    its summary and the next command printed."""
    split_name = os.path.splitext(os.path.basename(args.split))[0]
    list_file = os.path.join('ImageSets', 'Segmentation', split_name + '.txt')
    outdir.write_manifest(args.out, [
        list_file, CLASS_NAMES_FILE, 'config.json', 'pseudo_labels.json',
        'preview.png'] + [os.path.join(d, image_id + ext)
                          for image_id in dataset.ids for d, ext in (
                              ('SegmentationClass', '.png'),
                              ('JPEGImages', '.jpg'))])
    report = write_labels(model, dataset, args.out, args.low, args.high,
                          args.batch_size, crf, args.cam_scales, args.flip)
    for path, lines in ((list_file, dataset.ids),
                        (CLASS_NAMES_FILE, dataset.class_names)):
        write_text(output_path(args.out, path), '\n'.join(lines) + '\n')
    report['per_class_iou'] = dict(zip(dataset.class_names,
                                       report.pop('iu')))
    report.update(modelfile=args.modelfile, dataset=args.dataset,
                  data_dir=dataset.data_dir, split=args.split,
                  low=args.low, high=args.high, images=len(dataset),
                  crf=crf._asdict() if crf else None,
                  cam_scales=args.cam_scales, flip=args.flip,
                  images_with_mask=int(np.sum(dataset.has_mask)),
                  class_names=list(dataset.class_names),
                  units='mean_iu, iu, accuracy, labelled_share: fractions')
    outdir.write_config(args.out, args, data_dir=dataset.data_dir)
    write_text(output_path(args.out, 'pseudo_labels.json'),
               json.dumps(report, indent=2))
    miou = report['mean_iu']
    print('%d pseudo labels in %s (preview.png): mIoU %s on the labelled '
          'pixels of the %d images with a mask, %.1f %% of the pixels '
          'labelled (%s)' % (
              len(dataset), args.out,
              '-' if miou is None else '%.1f %%' % (100 * miou),
              report['images_with_mask'], 100 * report['labelled_share'],
              'dense CRF, tau %g' % crf.tau if crf else
              'low %g, high %g' % (args.low, args.high)))
    print('next: %s' % cli.next_command(
        argparse.Namespace(device=args.device), 'train_fcn.py', '--dataset',
        'voc', '--data-dir', args.out, '--split', split_name,
        '--val-data-dir', dataset.data_dir, '--val-split', 'val', '--out',
        os.path.normpath(args.out) + '_fcn'))


def write_grid(args, model, dataset):
    """``--crf-grid``: OUT/crf_grid.json and a line per row."""
    result = grid_search(model, dataset, args.batch_size)
    for name, row in result['rows'].items():
        print('%-22s mIoU %.1f (first half, chosen) %.1f (second half): %s'
              % (name, 100 * row['first_half'], 100 * row['second_half'],
                 ' '.join(row['flags'])))
    config = outdir.write_config(args.out, args, data_dir=dataset.data_dir)
    write_text(output_path(args.out, 'crf_grid.json'), json.dumps(
        dict(result, split=args.split, config=config,
             class_names=list(dataset.class_names)), indent=1))


if __name__ == '__main__':
    cli.run(main)
