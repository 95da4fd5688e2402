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
* Zero CAMs: share of flat (all-zero) CAMs; a model above 20 % is marked
  ``(!)``: its head finds no class evidence at conv5_3.

One markdown row per ``--modelfile``; everything is also written to
``--out/metrics.json``, the tau curves to ``--out/attention_miou.png``.
``--compare A B`` prints B - A per metric.
"""
import json
import os
import sys

import chainer
import numpy as np

from datasets import get_dataset, image_labels, preprocess
from metrics import (AttentionMetrics, class_cams, confusion_matrix,
                     gt_classes, mean_average_precision, segmentation_scores)
from metrics.attention import DEFAULT_TAU
from models import load_model
from training import cli, outdir
from training.progress import progress

# (key, title[, scale]): values are shown as scale * value, 2 decimals.
COLUMNS = [('accuracy', 'Accuracy'), ('accuracy_class', 'Accuracy Class'),
           ('mean_iu', 'Mean IU'), ('fwavacc', 'FWAVACC'), ('map', 'mAP')]
ATTENTION_COLUMNS = [('attention_miou', 'Attention mIoU'),
                     ('attention_tau', 'best tau', 1),
                     ('attention_miou_fixed', 'Attention mIoU @tau'),
                     ('energy', 'Energy'), ('pointing', 'Pointing'),
                     ('zero_cams', 'Zero CAMs')]
ZERO_CAMS_MARK = 0.2
DEFAULT_SPLIT = {'shapes': 'test', 'voc': 'seg11valid'}


def batches(dataset, batch_size):
    """Lists of consecutive ``(img, lbl)`` examples of equal size."""
    batch = []
    for i in range(len(dataset)):
        example = dataset[i]
        if batch and (len(batch) == batch_size or
                      batch[0][0].shape != example[0].shape):
            yield batch
            batch = []
        batch.append(example)
    if batch:
        yield batch


class SegmentationMetrics(object):
    def __init__(self, n_class):
        self.hist = np.zeros((n_class, n_class), dtype=np.int64)

    def add(self, lbl, outputs):
        self.hist += confusion_matrix(lbl, outputs['segmentation'],
                                      len(self.hist))

    def result(self):
        return segmentation_scores(self.hist)


class ClassificationMetrics(object):
    def __init__(self, n_class):
        self.n_class, self.scores, self.labels = n_class, [], []

    def add(self, lbl, outputs):
        self.scores.append(outputs['logits'])
        self.labels.append(image_labels(lbl, self.n_class))

    def result(self):
        m, aps = mean_average_precision(np.stack(self.scores),
                                        np.stack(self.labels))
        return {'map': m, 'ap': [None if np.isnan(a) else a for a in aps]}


def to_input(imgs, device):
    """``(N, 3, H, W)`` preprocessed batch of RGB images on ``device``."""
    return device.send(np.stack([preprocess(img) for img in imgs]))


def predict(model, imgs, device, x=None):
    """Segmentation ``(N, H, W)`` and logits ``(N, K)`` of RGB images (or
    of their already sent input ``x``)."""
    x = to_input(imgs, device) if x is None else x
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        seg = model.segment(x).array.argmax(axis=1)
        logits = model.classify(x).array
    to_cpu = chainer.backend.CpuDevice().send
    return to_cpu(seg), to_cpu(logits)


def evaluate_model(model, dataset, device, batch_size=8, metrics=None,
                   desc='evaluate'):
    """Run ``model`` over ``dataset`` once (progress on stderr, labelled
    ``desc``) and return the metrics' results merged in one dict.

    Each metric gets ``add(lbl, outputs)`` per image with ``outputs``:
    ``segmentation`` ``(H, W)``, ``logits`` ``(K,)`` and, when a metric has
    ``needs_cams``, ``cams`` ``(C, H, W)`` (normalised Grad-CAMs of the
    image's ground-truth classes ``cam_classes`` ``(C,)``).
    """
    metrics = metrics or [SegmentationMetrics(dataset.n_class),
                          ClassificationMetrics(dataset.n_class)]
    needs_cams = any(getattr(m, 'needs_cams', False) for m in metrics)
    shown = progress(len(dataset), desc)
    for batch in batches(dataset, batch_size):
        x = to_input([img for img, _ in batch], device)
        seg, logits = predict(model, None, device, x)
        classes = [gt_classes(lbl, dataset.n_class) for _, lbl in batch]
        cams = class_cams(model, x, classes) if needs_cams else None
        for i, (_, lbl) in enumerate(batch):
            outputs = dict(segmentation=seg[i], logits=logits[i])
            if needs_cams:
                outputs.update(cams=cams[i], cam_classes=classes[i])
            for m in metrics:
                m.add(lbl, outputs)
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


def resolve_model(ref, names):
    """A ``--compare`` reference: a row name, or a 0-based index into
    ``--modelfile``."""
    if ref in names:
        return ref
    if ref.isdigit() and int(ref) < len(names):
        return names[int(ref)]
    raise cli.UsageError('--compare %s: not one of the model names %s nor '
                         'an index 0..%d' % (ref, ', '.join(names),
                                             len(names) - 1))


def plot_attention_curves(results, path):
    """Attention mIoU against tau, one line per model, the best tau marked;
    written atomically to ``path`` (PNG)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
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
    ax.set_xlabel('tau (normalised CAM threshold)')
    ax.set_ylabel('attention mIoU (%)')
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path + '.tmp.png', dpi=100)
    plt.close(fig)
    os.replace(path + '.tmp.png', path)


def _write(path, text):
    with open(path + '.tmp', 'w') as f:
        f.write(text)
    os.replace(path + '.tmp', path)


def main():
    p = cli.parser(__doc__, training=False)
    p.add_argument('--modelfile', nargs='+', required=True,
                   help='model files to evaluate')
    p.add_argument('--names', nargs='+', default=None,
                   help='row names (default: the model file\'s directory)')
    p.add_argument('--split', default=None,
                   help='split to evaluate (default: test for shapes, '
                   'seg11valid for voc)')
    p.add_argument('--batch-size', type=cli.positive(int), default=8,
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
        raise cli.UsageError('--names needs one name per --modelfile')
    if not 0 < args.tau < 1:
        raise cli.UsageError('--tau must be in (0, 1), got %g' % args.tau)
    names = args.names or [os.path.basename(os.path.dirname(
        os.path.abspath(m))) for m in args.modelfile]
    if not args.names and len(set(names)) != len(names):
        names = [os.path.relpath(m) for m in args.modelfile]
    if len(set(names)) != len(names):
        raise cli.UsageError('--names must be unique, got %s'
                             % ', '.join(names))
    compare = ([resolve_model(r, names) for r in args.compare]
               if args.compare else None)
    outdir.claim_report(args.out, writes_config=True)

    device = cli.get_device(args.device)
    cli.set_seed(args.seed, device)
    split = args.split or DEFAULT_SPLIT[args.dataset]
    dataset = get_dataset(args.dataset, args.data_dir, split)
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
        model.to_device(device)
        metrics = [SegmentationMetrics(dataset.n_class),
                   ClassificationMetrics(dataset.n_class)]
        if not args.no_attention:
            metrics.append(AttentionMetrics(dataset.n_class, tau=args.tau))
        results[name] = evaluate_model(model, dataset, device,
                                       args.batch_size, metrics,
                                       'evaluate %s' % name)
        results[name]['modelfile'] = path
    rows = []
    for name in names:
        zero = results[name].get('zero_cams')
        flagged = zero is not None and zero > ZERO_CAMS_MARK
        if flagged:
            print('warning: %s: %.0f %% of its Grad-CAMs are all zero (no '
                  'class evidence at conv5_3); marked (!)'
                  % (name, 100 * zero), file=sys.stderr)
        rows.append((name + (' (!)' if flagged else ''), results[name]))
    table = markdown_table(rows, columns)
    print(table)
    diff = None
    if compare:
        diff = compare_table(*[(n, results[n]) for n in compare],
                             columns=columns)
        print()
        print(diff)
    os.makedirs(args.out, exist_ok=True)
    config = cli.write_config(args.out, args, split=split,
                              data_dir=dataset.data_dir)
    if not args.no_attention:
        plot_attention_curves(results, os.path.join(args.out,
                                                    'attention_miou.png'))
    _write(os.path.join(args.out, 'metrics.json'), json.dumps(
        dict(split=split, class_names=dataset.class_names, config=config,
             models=results, compare=compare), indent=2))
    _write(os.path.join(args.out, 'metrics.md'),
           table + '\n' + ('\n' + diff + '\n' if diff else ''))


if __name__ == '__main__':
    cli.run(main)
