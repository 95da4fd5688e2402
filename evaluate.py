#!/usr/bin/env python
"""Evaluate models on a split: the FCN table (Accuracy, Accuracy Class,
Mean IU, FWAVACC) and multi-label classification mAP.

One markdown row per ``--modelfile``; everything is also written to
``--out/metrics.json``.
"""
import json
import os

import chainer
import numpy as np

from datasets import get_dataset, preprocess
from metrics import (confusion_matrix, mean_average_precision,
                     segmentation_scores)
from models import load_model
from training import cli

COLUMNS = [('accuracy', 'Accuracy'), ('accuracy_class', 'Accuracy Class'),
           ('mean_iu', 'Mean IU'), ('fwavacc', 'FWAVACC'), ('map', 'mAP')]
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
        present = np.zeros(self.n_class - 1, dtype=np.int32)
        fg = np.unique(lbl)
        present[fg[(fg > 0) & (fg < self.n_class)] - 1] = 1
        self.scores.append(outputs['logits'])
        self.labels.append(present)

    def result(self):
        m, aps = mean_average_precision(np.stack(self.scores),
                                        np.stack(self.labels))
        return {'map': m, 'ap': [None if np.isnan(a) else a for a in aps]}


def predict(model, imgs, device):
    """Segmentation ``(N, H, W)`` and logits ``(N, K)`` of RGB images."""
    x = device.send(np.stack([preprocess(img) for img in imgs]))
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        seg = model.segment(x).array.argmax(axis=1)
        logits = model.classify(x).array
    to_cpu = chainer.backend.CpuDevice().send
    return to_cpu(seg), to_cpu(logits)


def evaluate_model(model, dataset, device, batch_size=8, metrics=None):
    """Run ``model`` over ``dataset`` once and return the metrics' results
    merged in one dict."""
    metrics = metrics or [SegmentationMetrics(dataset.n_class),
                          ClassificationMetrics(dataset.n_class)]
    for batch in batches(dataset, batch_size):
        seg, logits = predict(model, [img for img, _ in batch], device)
        for i, (_, lbl) in enumerate(batch):
            outputs = dict(segmentation=seg[i], logits=logits[i])
            for m in metrics:
                m.add(lbl, outputs)
    result = {}
    for m in metrics:
        result.update(m.result())
    return result


def markdown_table(rows, columns=COLUMNS):
    """``rows``: list of ``(name, metrics)``; percentages, 2 decimals."""
    lines = ['| model | ' + ' | '.join(t for _, t in columns) + ' |',
             '|---' * (len(columns) + 1) + '|']
    for name, m in rows:
        cells = ['%.2f' % (100 * m[k]) if m.get(k) is not None else '-'
                 for k, _ in columns]
        lines.append('| %s | %s |' % (name, ' | '.join(cells)))
    return '\n'.join(lines)


def main():
    p = cli.parser(__doc__, training=False)
    p.add_argument('--modelfile', nargs='+', required=True,
                   help='model files to evaluate')
    p.add_argument('--names', nargs='+', default=None,
                   help='row names (default: the model file\'s directory)')
    p.add_argument('--split', default=None,
                   help='split to evaluate (default: test for shapes, '
                   'seg11valid for voc)')
    p.add_argument('--batch-size', type=cli.positive(int), default=8)
    p.add_argument('--out', default='runs/eval', help='output directory')
    args = p.parse_args()
    if args.names and len(args.names) != len(args.modelfile):
        raise cli.UsageError('--names needs one name per --modelfile')
    names = args.names or [os.path.basename(os.path.dirname(
        os.path.abspath(m))) for m in args.modelfile]

    device = cli.get_device(args.device)
    cli.set_seed(args.seed, device)
    split = args.split or DEFAULT_SPLIT[args.dataset]
    dataset = get_dataset(args.dataset, args.data_dir, split)
    models = [load_model(m, n_class=dataset.n_class)[0]
              for m in args.modelfile]  # fail early on any bad file
    results = {}
    for name, path, model in zip(names, args.modelfile, models):
        model.to_device(device)
        results[name] = evaluate_model(model, dataset, device,
                                       args.batch_size)
        results[name]['modelfile'] = path
    table = markdown_table([(n, results[n]) for n in names])
    print(table)
    os.makedirs(args.out, exist_ok=True)
    config = cli.write_config(args.out, args, split=split,
                              data_dir=dataset.data_dir)
    with open(os.path.join(args.out, 'metrics.json'), 'w') as f:
        json.dump(dict(split=split, class_names=dataset.class_names,
                       config=config, models=results), f, indent=2)
    with open(os.path.join(args.out, 'metrics.md'), 'w') as f:
        f.write(table + '\n')


if __name__ == '__main__':
    cli.run(main)
