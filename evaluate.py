#!/usr/bin/env python
"""Evaluate models on a split: the FCN table (Accuracy, Accuracy Class,
Mean IU, FWAVACC; Long et al.), multi-label mAP with each class's AP, the
quality of the Grad-CAM attention and, on ``shapes``, how much the
classifier follows the context cues (definitions and sources in
``metrics/attention.py`` and ``metrics/cue.py``):

* Attention mIoU at each model's tau chosen on the tuning split
  (``--tau-from``; without it ``OUT_tune/metrics.json`` where that
  evaluation of the same model files exists), at the fixed ``--tau`` and
  over the tau curve (whose best, chosen on the scored split itself, is
  shown too);
* pointing game (Zhang et al.) at 15 px and at 15 px per 500 px of the
  image's longer side (ours), energy-based pointing game (Score-CAM), and
  ours: energy in the mask and the exact pointing game;
* zero CAMs: a model above 5 % all-zero CAMs, or whose pointing game is
  not above chance, is marked ``(!)``, and so is each class below twice
  its chance;
* cue reliance (``shapes``): the gaps and AUCs of ``metrics/cue.py``.

The maps are ``models.class_cams`` (``--cam-scales``, ``--flip``). A
summary is printed; ``OUT/metrics.md`` holds every column and a per-class
table of each model in percent, ``OUT/metrics.json`` the same in
fractions, ``OUT/per_image.npz`` every image's counts (intervals:
``metrics/bootstrap.py``) and ``OUT/attention_miou.png`` the tau curves.
The pixel metrics and the attention columns are over the images with a
mask; without any, only mAP is measured.
"""
import functools
import json
import os
import sys
import textwrap

import numpy as np
from tqdm import tqdm

import datasets
from datasets import TEST_SPLIT, batches, get_dataset, preprocess_batch, shapes
from metrics import (AttentionMetrics, ClassificationMetrics,
                     SegmentationMetrics, gt_classes, report)
from metrics.attention import DEFAULT_TAU, attention_warnings, miou_at
from metrics.bootstrap import class_values
from metrics.cue import CueMetrics
from metrics.records import save_records
from models import class_cams
from models.io import load_model
from runtime import cli, flags, outdir
from runtime.device import get_device, set_seed
from runtime.errors import UsageError, one_line
from runtime.files import atomic_write, output_path, read_json, write_text
from training.extensions.tensorboard import config_text, write_texts
from visualizations import attention_curves_figure, save_figure

OUTPUTS = outdir.names('metrics.json', 'metrics.md', 'attention_miou.png',
                       'per_image.npz', dirs=('tensorboard',))
KEYS = ['accuracy', 'accuracy_class', 'mean_iu', 'fwavacc', 'map']
ATTENTION_KEYS = ['attention_miou_tuned', 'attention_tuned_tau',
                  'attention_miou_fixed', 'attention_miou', 'pointing_scaled',
                  'pointing_15px', 'energy_box', 'energy', 'pointing',
                  'zero_cams']
#: The columns of the per-class tables, each with the per-image record it
#: needs (the split and the flags decide which are there).
CLASS_KEYS = dict(ap='logits', iou='confusion',
                  attention_iou_tuned='tuned_tau',
                  attention_iou_fixed='attention_sweep',
                  pointing_scaled='attention_sweep',
                  pointing_scaled_chance='attention_sweep',
                  pointing_15px='attention_sweep',
                  pointing_15px_chance='attention_sweep')
CUE_KEYS = ['cue_gap_absent', 'cue_gap_present', 'cue_auc_absent']
TUNE = 'tune'   # the split where the attention thresholds are chosen
UNITS = ('metrics and per_class: fractions of 1 (the tables show percent); '
         'pointing tolerances (px, pointing_scaled_px): pixels')


def evaluate_model(model, dataset, device, batch_size=8, metrics=None,
                   desc='evaluate', cues=None, scales=(1.0,), flip=False):
    """Run ``model`` over ``dataset`` once; returns the ``metrics``'
    results merged in one dict and their per-image records in another.

    Each metric gets ``add(label_map, outputs)`` per image, ``outputs``:
    ``segmentation`` ``(H, W)``, ``logits`` and ``labels`` ``(K,)``,
    ``cues`` ``(K,)`` (the image's row of ``cues`` ``(N, K)``) and, when a
    metric ``needs_cams``, ``cams`` ``(C, H, W)`` of ``cam_classes``
    ``(C,)``, the classes of the image's mask (``models.class_cams``).
    """
    metrics = metrics or [SegmentationMetrics(dataset.n_class),
                          ClassificationMetrics(dataset.n_class)]
    needs_cams = any(getattr(m, 'needs_cams', False) for m in metrics)
    model.to_device(device)
    index = 0
    with tqdm(total=len(dataset), desc=desc, unit='image') as shown:
        for batch in batches(dataset, batch_size):
            x = model.device.send(preprocess_batch([b[0] for b in batch]))
            seg, logits = model.predict(x)
            classes = [gt_classes(label_map, dataset.n_class)
                       for _, label_map, _ in batch]
            if needs_cams:
                cams = class_cams(model, x, classes, scales, flip)
            for i, (_, label_map, labels) in enumerate(batch):
                outputs = dict(segmentation=seg[i], logits=logits[i],
                               labels=labels)
                if needs_cams:
                    outputs.update(cams=cams[i], cam_classes=classes[i])
                if cues is not None:
                    outputs['cues'] = cues[index]
                for m in metrics:
                    m.add(label_map, outputs)
                index += 1
            shown.update(len(batch))
    result, records = {}, {}
    for m in metrics:
        result.update(m.result())
        records.update(m.per_image())
    return result, records


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


def marked(name, metrics, class_names):
    """``name``, with ``(!)`` and a warning when its Grad-CAMs are useless
    for GAIN (:func:`metrics.attention.attention_warnings`)."""
    problems = attention_warnings(metrics, class_names)
    if not problems:
        return name
    print('warning: %s: %s; marked (!)' % (name, '; '.join(problems)),
          file=sys.stderr)
    return name + ' (!)'


def resolve_model(ref, names):
    """A ``--compare`` reference: a model name or an index into
    ``--modelfile``."""
    if ref in names:
        return ref
    if ref.isdigit() and int(ref) < len(names):
        return names[int(ref)]
    raise UsageError('--compare %s: not one of the model names %s nor an '
                     'index 0..%d' % (ref, ', '.join(names), len(names) - 1))


def tuned_taus(path, names):
    """``{name: tau}``: each model's best tau in the metrics.json ``path``."""
    models = read_json(path, '--tau-from')
    try:
        return {n: float(models['models'][n]['attention_tau'])
                for n in names}
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError('--tau-from %s: not the metrics.json of an '
                         'evaluation with attention of the models %s (%s)'
                         % (path, ', '.join(names), one_line(e)))


def same_models(path, names, modelfiles):
    """Whether the metrics.json ``path`` evaluates on ``tune`` the files
    ``modelfiles`` under ``names``, and was written after them."""
    try:
        found = read_json(path)
        return found['split'] == TUNE and all(
            os.path.realpath(found['models'][n]['modelfile']) ==
            os.path.realpath(m) and os.path.getmtime(m) <
            os.path.getmtime(path) for n, m in zip(names, modelfiles))
    except (UsageError, KeyError, TypeError, OSError):
        return False


def tau_origin(args, split, names):
    """``(path, sentence)``: the metrics.json of the tuned taus (None:
    none) and where the thresholds come from, in words."""
    if args.tau_from:
        return args.tau_from, ('tau: each model\'s best on another '
                               'evaluation, %s' % args.tau_from)
    if split == TUNE:
        return None, ('tau: chosen on this split (%s): these are the '
                      'thresholds that --tau-from takes' % TUNE)
    path = os.path.join(os.path.normpath(args.out) + '_tune', 'metrics.json')
    if same_models(path, names, args.modelfile):
        return path, ('tau: each model\'s best on split %s, from %s (found '
                      'beside --out)' % (TUNE, path))
    return None, ('tau: chosen on the scored split (%s) itself, an optimistic '
                  'number: evaluate the same models with --split %s --out %s '
                  'first, or pass --tau-from METRICS_JSON'
                  % (split, TUNE, os.path.dirname(path)))


def parse_args():
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
                   help='images per forward pass')
    p.add_argument('--tau', type=float, default=DEFAULT_TAU,
                   help='CAM threshold of the "Attention mIoU @tau" column')
    p.add_argument('--tau-from', default=None, metavar='METRICS_JSON',
                   help='metrics.json of the same --names on the tuning '
                   'split, whose best taus give the "tuned tau" column')
    p.add_argument('--no-attention', action='store_true',
                   help='skip the Grad-CAM columns (faster)')
    flags.add_cam_flags(p)
    p.add_argument('--compare', nargs=2, metavar=('A', 'B'), default=None,
                   help='print B - A per metric (model names or 0-based '
                   'indices into --modelfile)')
    p.add_argument('--out', default='runs/eval', help='output directory')
    p.add_argument('--tensorboard', action='store_true',
                   help='also write the tables to OUT/tensorboard')
    args = p.parse_args()
    if args.names and len(args.names) != len(args.modelfile):
        raise UsageError('--names needs one name per --modelfile')
    return args


def evaluate_all(args, names, dataset, loaded, device, attention, tuned,
                 cues):
    """``(results, records)`` of every model by name
    (:func:`evaluate_model`); ``tuned``: the taus of ``--tau-from``."""
    results, records = {}, {}
    for name, path, (model, has_head) in zip(names, args.modelfile, loaded):
        if not has_head or model.head_trained_by == []:
            print('warning: %s has no trained classification head; its mAP '
                  'and attention columns are of a random head' % path,
                  file=sys.stderr)
        metrics = [ClassificationMetrics(dataset.n_class)]
        if dataset.has_mask.any():
            metrics.append(SegmentationMetrics(dataset.n_class))
        if attention:
            metrics.append(AttentionMetrics(dataset.n_class, tau=args.tau))
        if cues is not None:
            metrics.append(CueMetrics())
        result, records[name] = evaluate_model(
            model, dataset, device, args.batch_size, metrics,
            'evaluate %s' % name, cues, args.cam_scales, args.flip)
        result['modelfile'] = path
        if name in tuned:
            records[name]['tuned_tau'] = np.float32(tuned[name])
            result.update(attention_tuned_tau=tuned[name],
                          attention_miou_tuned=miou_at(records[name],
                                                       tuned[name]))
        for key in KEYS:    # the pixel metrics of a split without mask
            result.setdefault(key, None)
        result['per_class'] = class_values(
            [k for k, needs in CLASS_KEYS.items() if needs in records[name]],
            records[name], dataset.class_names)
        results[name] = result
    return results, records


def mask_count(dataset, split):
    """The images of ``dataset`` with a mask, said when not all have one."""
    masked = int(np.sum(dataset.has_mask))
    if not masked:
        print('split %s: none of its %d images has a mask: only mAP is '
              'measured' % (split, len(dataset)), file=sys.stderr)
    elif masked < len(dataset):
        print('split %s: %d of its %d images have a mask: the pixel metrics '
              'and the attention columns are over those, mAP over all'
              % (split, masked, len(dataset)), file=sys.stderr)
    return masked


def summary(args, split, dataset, origin, rows, compare, px):
    """The printed summary (lines of at most 100 characters): the split,
    where tau comes from (``origin``), the main columns of ``rows``
    (``[(name, metrics)]``) in percent and B - A of ``compare``."""
    wrap = functools.partial(textwrap.fill, width=100, subsequent_indent='  ',
                             break_long_words=False, break_on_hyphens=False)
    lines = [wrap('evaluate.py: split %s of %s, %d images (%d with a mask) '
                  'in %s' % (split, args.dataset, len(dataset),
                             np.sum(dataset.has_mask), dataset.data_dir))]
    lines += [wrap(origin)] if origin else []
    tuned = rows[0][1].get('attention_miou_tuned') is not None
    cols = [(h, k) for h, k in (
        ('Mean IU', 'mean_iu'), ('mAP', 'map'),
        ('Att mIoU', 'attention_miou_tuned' if tuned else 'attention_miou'),
        ('tau', 'attention_tuned_tau' if tuned else 'attention_tau'),
        ('@%.2f' % args.tau, 'attention_miou_fixed'),
        ('Pointing', 'pointing_scaled'), ('Energy', 'energy_box'),
        ('Zero CAMs', 'zero_cams')) if k in rows[0][1]]
    if compare:
        (na, a), (nb, b) = compare
        rows = rows + [('%s - %s' % (nb, na), {k: '%+.1f' % (
            100 * (b[k] - a[k])) for _, k in cols if 'tau' not in k and
            a.get(k) is not None and b.get(k) is not None})]
    width = min(30, max(len(n) for n, _ in rows))
    for name, m in [('model', {k: h for h, k in cols})] + rows:
        lines.append('%-*s' % (width, name[:width]) + ''.join('  %*s' % (
            max(5, len(h)), m[k] if isinstance(m.get(k), str) else
            report.cell(m.get(k), k)) for h, k in cols))
    if len(cols) > 2:
        lines.append(wrap(
            'In percent. Att mIoU: attention mIoU at each model\'s tau; @%.2f:'
            ' at --tau %.2f; Pointing: pointing game at %g px (15 px per 500 '
            'px); Energy: energy-based pointing game (in the box).'
            % (args.tau, args.tau, px)))
    lines.append(wrap('Every column and class: %s (percent), %s '
                      '(fractions)' % (os.path.join(args.out, 'metrics.md'),
                                       os.path.join(args.out,
                                                    'metrics.json'))))
    return '\n'.join(lines)


def main():
    args = parse_args()
    names = model_names(args.names, args.modelfile)
    compare = (tuple(resolve_model(r, names) for r in args.compare)
               if args.compare else None)
    split = args.split or TEST_SPLIT[args.dataset]
    dataset = get_dataset(args.dataset, args.data_dir, split,
                          layout=args.voc_layout,
                          max_pixels=args.max_image_pixels)
    outdir.claim(args.out, OUTPUTS, [
        ('--data-dir', dataset.data_dir, 'dir')] + [
        ('--modelfile', m, 'file') for m in args.modelfile])
    device = get_device(args.device)
    set_seed(args.seed, device)
    loaded = [load_model(m, n_class=dataset.n_class)
              for m in args.modelfile]  # fail early on any bad file
    masked = mask_count(dataset, split)
    attention = not args.no_attention and masked > 0
    tau_file, origin = (tau_origin(args, split, names) if attention
                        else (None, None))
    tuned = tuned_taus(tau_file, names) if tau_file else {}
    cues = (shapes.cue_flags(dataset.data_dir, dataset.ids)
            if args.dataset == 'shapes' else None)
    keys = KEYS + ([] if not attention else [
        k for k in ATTENTION_KEYS if tuned or 'tuned' not in k]) + (
        CUE_KEYS if cues is not None else [])
    results, records = evaluate_all(args, names, dataset, loaded, device,
                                    attention, tuned, cues)
    px = results[names[0]].get('pointing_scaled_px')
    rows = [(marked(name, results[name], dataset.class_names), results[name])
            for name in names]
    compared = compare and [(n, results[n]) for n in compare]
    print(summary(args, split, dataset, origin, rows, compared, px))
    config = outdir.write_config(args.out, args, split=split,
                                 data_dir=dataset.data_dir, tau_from=tau_file,
                                 images=len(dataset), images_with_mask=masked)
    table = '\n\n'.join([report.markdown_table(
        rows, keys, tau=args.tau, px=px)] + [
        'Per class, %s:\n\n%s' % (name, report.class_table(
            results[name]['per_class'], tau=args.tau, px=px))
        for name in names])
    diff = compare and report.compare_table(*compared, keys=keys,
                                            tau=args.tau, px=px)
    write_results(args, dataset, split, config, results, records, table,
                  diff, compare, attention)


def write_results(args, dataset, split, config, results, records, table,
                  diff, compare, attention):
    """metrics.json, metrics.md, per_image.npz, the attention curves and
    the TensorBoard texts, under ``--out``."""
    if attention:
        save_figure(attention_curves_figure(results),
                    output_path(args.out, 'attention_miou.png'), dpi=100)
    write_text(output_path(args.out, 'metrics.json'), json.dumps(
        dict(split=split, class_names=dataset.class_names, config=config,
             units=UNITS, models=results, compare=compare), indent=2))
    with atomic_write(output_path(args.out, 'per_image.npz'), 'wb') as f:
        save_records(f, records, dataset.ids)
    write_text(output_path(args.out, 'metrics.md'),
               table + '\n' + ('\n' + diff + '\n' if diff else ''))
    if args.tensorboard:
        texts = dict(evaluation=table, config=config_text(config))
        if diff:
            texts['comparison'] = diff
        write_texts(args.out, texts)


if __name__ == '__main__':
    cli.run(main)
