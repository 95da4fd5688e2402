#!/usr/bin/env python
"""Evaluate models on a split: the FCN table (Accuracy, Accuracy Class,
Mean IU, FWAVACC), multi-label classification mAP and the quality of the
Grad-CAM attention (see ``metrics/attention.py``):

* Attention mIoU: segmentation from the normalised CAMs of each image's
  ground-truth classes (top class where its map >= tau, else background),
  at the best tau of a 0.05..0.95 sweep ('best tau') and at the fixed
  ``--tau`` (default 0.5, GAIN's soft-mask threshold ``--sigma``) so that
  models are also compared at one threshold;
* Energy: share of each CAM's mass on its class's pixels;
* Pointing: share of CAMs whose peak lies on their class;
* Zero CAMs: share of flat (all-zero) CAMs; a model above 5 % is marked
  ``(!)`` (its head finds no class evidence at conv5_3), and so is one
  whose pointing game is not above chance (``pointing_chance`` in
  metrics.json: the share of a class's pixels among the labelled pixels of
  its image, what a peak drawn at random scores).

One markdown row per ``--modelfile``; everything is also written to
``--out/metrics.json``, the tau curves to ``--out/attention_miou.png``.
``--compare A B`` prints B - A per metric.
"""
import json
import os
import sys

import datasets
from datasets import TEST_SPLIT, batches, get_dataset, preprocess_batch
from metrics import (AttentionMetrics, ClassificationMetrics,
                     SegmentationMetrics, gt_classes)
from metrics.attention import DEFAULT_TAU
from models import class_cams, load_model
from runtime import cli, flags, outdir
from runtime.config import write_config
from runtime.device import get_device, set_seed
from runtime.errors import UsageError
from runtime.files import write_text
from runtime.progress import progress
from training.extensions import PointingChance, attention_warnings
from visualizations import attention_curves_figure, save_figure

OUTPUTS = ('config.json', 'metrics.json', 'metrics.md', 'attention_miou.png')
# (key, title[, scale]): values are shown as scale * value, 2 decimals.
COLUMNS = [('accuracy', 'Accuracy'), ('accuracy_class', 'Accuracy Class'),
           ('mean_iu', 'Mean IU'), ('fwavacc', 'FWAVACC'), ('map', 'mAP')]
ATTENTION_COLUMNS = [('attention_miou', 'Attention mIoU'),
                     ('attention_tau', 'best tau', 1),
                     ('attention_miou_fixed', 'Attention mIoU @tau'),
                     ('energy', 'Energy'), ('pointing', 'Pointing'),
                     ('zero_cams', 'Zero CAMs')]


def evaluate_model(model, dataset, device, batch_size=8, metrics=None,
                   desc='evaluate'):
    """Run ``model`` (moved to ``device``) over ``dataset`` once (progress
    on stderr, labelled ``desc``) and return the metrics' results merged in
    one dict.

    Each metric gets ``add(label_map, outputs)`` per image with ``outputs``:
    ``segmentation`` ``(H, W)``, ``logits`` ``(K,)`` and, when a metric has
    ``needs_cams``, ``cams`` ``(C, H, W)`` (normalised Grad-CAMs of the
    image's ground-truth classes ``cam_classes`` ``(C,)``).
    """
    metrics = metrics or [SegmentationMetrics(dataset.n_class),
                          ClassificationMetrics(dataset.n_class)]
    needs_cams = any(getattr(m, 'needs_cams', False) for m in metrics)
    model.to_device(device)
    shown = progress(len(dataset), desc)
    for batch in batches(dataset, batch_size):
        x = model.device.send(preprocess_batch([img for img, _ in batch]))
        seg, logits = model.predict(x)
        classes = [gt_classes(label_map, dataset.n_class)
                   for _, label_map in batch]
        cams = class_cams(model, x, classes) if needs_cams else None
        for i, (_, label_map) in enumerate(batch):
            outputs = dict(segmentation=seg[i], logits=logits[i])
            if needs_cams:
                outputs.update(cams=cams[i], cam_classes=classes[i])
            for m in metrics:
                m.add(label_map, outputs)
        shown.update(len(batch))
    shown.close()
    result = {}
    for m in metrics:
        result.update(m.result())
    return result


def _cell(m, column):
    key, scale = column[0], (column[2] if len(column) > 2 else 100)
    return '%.2f' % (scale * m[key]) if m.get(key) is not None else '-'


def markdown_table(rows, columns=COLUMNS):
    """``rows``: list of ``(name, metrics)``; percentages, 2 decimals."""
    lines = ['| model | ' + ' | '.join(c[1] for c in columns) + ' |',
             '|---' * (len(columns) + 1) + '|']
    for name, m in rows:
        cells = [_cell(m, c) for c in columns]
        lines.append('| %s | %s |' % (name, ' | '.join(cells)))
    return '\n'.join(lines)


def compare_table(a, b, columns=COLUMNS):
    """Markdown table of each metric of ``a`` and ``b`` (``(name,
    metrics)``) and the difference B - A (percentage points)."""
    (na, ma), (nb, mb) = a, b
    lines = ['| metric | A: %s | B: %s | B - A |' % (na, nb),
             '|---|---|---|---|']
    for c in columns:
        key, scale = c[0], (c[2] if len(c) > 2 else 100)
        diff = ('%+.2f' % (scale * (mb[key] - ma[key]))
                if ma.get(key) is not None and mb.get(key) is not None
                else '-')
        lines.append('| %s | %s | %s | %s |' % (c[1], _cell(ma, c),
                                                 _cell(mb, c), diff))
    return '\n'.join(lines)


def model_names(names, modelfiles):
    """``--names``, or each model file's directory (its path where two
    share one); UsageError unless unique."""
    if not names:
        names = [os.path.basename(os.path.dirname(os.path.abspath(m)))
                 for m in modelfiles]
        if len(set(names)) != len(names):
            names = [os.path.relpath(m) for m in modelfiles]
    if len(set(names)) != len(names):
        raise UsageError('--names must be unique, got %s'
                         % ', '.join(names))
    return names


def marked(name, metrics):
    """``name``, with ``(!)`` (and a warning) when its Grad-CAMs are
    useless for GAIN (:func:`training.extensions.attention_warnings`)."""
    problems = attention_warnings(metrics)
    if not problems:
        return name
    print('warning: %s: %s; marked (!)' % (name, '; '.join(problems)),
          file=sys.stderr)
    return name + ' (!)'


def resolve_model(ref, names):
    """A ``--compare`` reference: a row name, or a 0-based index into
    ``--modelfile``."""
    if ref in names:
        return ref
    if ref.isdigit() and int(ref) < len(names):
        return names[int(ref)]
    raise UsageError('--compare %s: not one of the model names %s nor '
                     'an index 0..%d' % (ref, ', '.join(names),
                                         len(names) - 1))


def main():
    p = flags.parser(__doc__, training=False)
    datasets.add_flags(p)
    p.add_argument('--modelfile', nargs='+', required=True,
                   help='model files to evaluate')
    p.add_argument('--names', nargs='+', default=None,
                   help='row names (default: the model file\'s directory)')
    p.add_argument('--split', default=None,
                   help='split to evaluate (default: test for shapes, '
                   'seg11valid for voc)')
    p.add_argument('--batch-size', type=int, default=8,
                   help='images per forward pass (consecutive images of '
                   'one size)')
    p.add_argument('--tau', type=float, default=DEFAULT_TAU,
                   help='fixed CAM threshold of the "Attention mIoU @tau" '
                   'column (GAIN\'s soft-mask threshold sigma), in (0, 1)')
    p.add_argument('--no-attention', action='store_true',
                   help='skip the Grad-CAM columns (faster)')
    p.add_argument('--compare', nargs=2, metavar=('A', 'B'), default=None,
                   help='print B - A per metric (model names or 0-based '
                   'indices into --modelfile)')
    p.add_argument('--out', default='runs/eval', help='output directory')
    args = p.parse_args()
    if args.names and len(args.names) != len(args.modelfile):
        raise UsageError('--names needs one name per --modelfile')
    names = model_names(args.names, args.modelfile)
    compare = ([resolve_model(r, names) for r in args.compare]
               if args.compare else None)
    split = args.split or TEST_SPLIT[args.dataset]
    dataset = get_dataset(args.dataset, args.data_dir, split,
                          max_pixels=args.max_image_pixels)
    outdir.claim_report(
        args.out, writes_config=True, files=OUTPUTS,
        inputs=[('--data-dir', dataset.data_dir, 'dir')] +
        [('--modelfile', m, 'file') for m in args.modelfile])

    device = get_device(args.device)
    set_seed(args.seed, device)
    loaded = [load_model(m, n_class=dataset.n_class)
              for m in args.modelfile]  # fail early on any bad file
    columns = COLUMNS + ([] if args.no_attention else [
        (c[0], c[1].replace('@tau', '@%.2f' % args.tau)) + c[2:]
        for c in ATTENTION_COLUMNS])
    results = {}
    for name, path, (model, has_head) in zip(names, args.modelfile, loaded):
        if not has_head or model.head_trained_by == []:
            print('warning: %s has no trained classification head; its mAP '
                  'and attention columns are of a random head' % path,
                  file=sys.stderr)
        metrics = [SegmentationMetrics(dataset.n_class),
                   ClassificationMetrics(dataset.n_class)]
        if not args.no_attention:
            metrics += [AttentionMetrics(dataset.n_class, tau=args.tau),
                        PointingChance(dataset.n_class)]
        results[name] = evaluate_model(model, dataset, device,
                                       args.batch_size, metrics,
                                       'evaluate %s' % name)
        results[name]['modelfile'] = path
    table = markdown_table([(marked(name, results[name]), results[name])
                            for name in names], columns)
    print(table)
    diff = None
    if compare:
        diff = compare_table(*[(n, results[n]) for n in compare],
                             columns=columns)
        print()
        print(diff)
    config = write_config(args.out, args, split=split,
                          data_dir=dataset.data_dir)
    if not args.no_attention:
        save_figure(attention_curves_figure(results),
                    outdir.output_path(args.out, 'attention_miou.png'),
                    dpi=100)
    write_text(outdir.output_path(args.out, 'metrics.json'), json.dumps(
        dict(split=split, class_names=dataset.class_names, config=config,
             models=results, compare=compare), indent=2))
    write_text(outdir.output_path(args.out, 'metrics.md'),
               table + '\n' + ('\n' + diff + '\n' if diff else ''))


if __name__ == '__main__':
    cli.run(main)
