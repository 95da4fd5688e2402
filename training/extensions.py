"""Trainer extensions: validation of segmentation, classification and
attention quality, the model that validated best, and the pictures of a
run (its logged terms, its attention)."""
import math
import os
import sys

import chainer
import numpy as np
from chainer.training import extension, extensions

import visualizations
from datasets import batches, deprocess, preprocess_batch
from metrics import (AttentionMetrics, ClassificationMetrics,
                     confusion_matrix, gt_classes, segmentation_scores)
from models import class_cams, inference_cams
from models.gain import erased_cams, soft_erase, soft_mask
from runtime.errors import ModelFileError
from runtime.guards import check_finite_params
from runtime.model_files import read_meta, save_model
from runtime.outdir import output_path
from runtime.snapshots import set_aside


class MeanIUEvaluator(extensions.Evaluator):
    """Evaluator of a :class:`training.losses.SegmentationLoss` that also
    reports ``validation/main/mean_iu``, the mean IU of the whole pass
    (from one confusion matrix, not a mean over batches; with
    ``--communicator`` the mean of the ranks' shards)."""

    def __init__(self, iterator, loss, **kwargs):
        super().__init__(iterator, loss, eval_func=self.segment, **kwargs)
        self.confusion = None

    def segment(self, x, label_map, labels, sizes=None):
        """The loss of one batch, its predictions added to ``confusion``."""
        loss = self.get_target('main')
        score = loss.model.segment(x, sizes)
        to_cpu = chainer.backend.CpuDevice().send
        self.confusion += confusion_matrix(
            to_cpu(label_map), to_cpu(score.array.argmax(axis=1)),
            len(self.confusion))
        return loss.from_scores(score, x, label_map, labels, sizes)

    def evaluate(self):
        n = self.get_target('main').model.n_class
        self.confusion = np.zeros((n, n), np.int64)
        result = super().evaluate()
        result['validation/main/mean_iu'] = segmentation_scores(
            self.confusion)['mean_iu']
        return result


class AttentionEvaluator(extension.Extension):
    """Attention quality on a fixed set of validation images: reports
    ``validation/main/`` ``pointing``, ``energy``, ``attention_miou`` (best
    tau) and ``zero_cams`` (the share of flat maps), as defined in
    :mod:`metrics.attention`, over the Grad-CAMs of every labelled
    (image, class) pair, in percent (as printed at the start of a run).
    Called before the first update (see ``build_trainer``) it reports the
    result of :meth:`evaluate` at the start, when there is one, rather
    than computing it again.

    Args:
        model (FCN8s): the network.
        dataset: raw ``(img, label_map, labels)`` examples with
            ``n_class``, masked ones; the first ``n_images`` are used.
        batch_size (int): images per Grad-CAM batch (consecutive images of
            one size).
    """
    trigger = 100, 'iteration'
    priority = extension.PRIORITY_WRITER
    KEYS = ('pointing', 'energy', 'attention_miou', 'zero_cams')

    def __init__(self, model, dataset, n_images=200, batch_size=8):
        self.model = model
        self.n_class = dataset.n_class
        examples = [dataset[i] for i in range(min(n_images, len(dataset)))]
        self.n_images = len(examples)
        self.batches = list(batches(examples, batch_size))
        self.at_start = None

    def evaluate(self):
        """:func:`metrics.attention.attention_scores` of the images, as
        fractions (None where undefined)."""
        metrics = AttentionMetrics(self.n_class)
        for batch in self.batches:
            x = self.model.device.send(
                preprocess_batch([img for img, _, _ in batch]))
            classes = [gt_classes(label_map, self.n_class)
                       for _, label_map, _ in batch]
            cams = class_cams(self.model, x, classes)
            for (_, label_map, _), cam, cs in zip(batch, cams, classes):
                metrics.add(label_map, dict(cams=cam, cam_classes=cs))
        return metrics.result()

    def evaluate_at_start(self):
        """:meth:`evaluate` of the weights before training, kept for the
        log's iteration-0 entry."""
        self.at_start = self.evaluate()
        return self.at_start

    def __call__(self, trainer):
        result = (self.at_start if trainer.is_before_training and
                  self.at_start is not None else self.evaluate())
        chainer.report({'validation/main/' + k: 100 * result[k]
                        for k in self.KEYS if result[k] is not None})


class MeanAPEvaluator(extension.Extension):
    """Reports ``validation/main/map``, the multi-label mAP of the head's
    scores over a validation split, as ``evaluate.py`` computes it (see
    :mod:`metrics.classification`); nothing where no class has a positive
    image.

    Args:
        model (FCN8s): the network, run in test mode.
        dataset: raw ``(img, label_map, labels)`` examples with
            ``n_class``, read anew at each evaluation.
        batch_size (int): images per forward pass (consecutive images of
            one size).
    """
    trigger = 100, 'iteration'
    priority = extension.PRIORITY_WRITER

    def __init__(self, model, dataset, batch_size=8):
        self.model, self.dataset, self.batch_size = model, dataset, batch_size

    def evaluate(self):
        """The mAP, None where undefined."""
        metrics = ClassificationMetrics(self.dataset.n_class)
        to_cpu = chainer.backend.CpuDevice().send
        with chainer.using_config('train', False), \
                chainer.no_backprop_mode():
            for batch in batches(self.dataset, self.batch_size):
                x = self.model.device.send(
                    preprocess_batch([img for img, _, _ in batch]))
                logits = to_cpu(self.model.classify(x).array)
                for (_, label_map, labels), scores in zip(batch, logits):
                    metrics.add(label_map, dict(logits=scores,
                                                labels=labels))
        value = metrics.result()['map']
        return value if value is not None and math.isfinite(value) else None

    def __call__(self, trainer):
        value = self.evaluate()
        if value is not None:
            chainer.report({'validation/main/map': value})


class KeepBest(extension.Extension):
    """Writes ``out/model_best.npz`` (atomically, in the format of
    ``model.npz``) each time the validation ``metric`` (a key
    ``validation/main/<metric>`` that a validator reports, higher is
    better) beats every earlier value; the earliest of equal scores is
    kept. Its ``_meta/best`` records ``metric``, ``score`` and
    ``iteration``.

    Extend it with the validators' trigger, after them. The best so far is
    part of the trainer's snapshots: a resumed run keeps it, and sets aside
    (``*.superseded``) a ``model_best.npz`` that a killed run wrote after
    the snapshot it resumes from.
    """
    priority = extension.PRIORITY_READER
    FILENAME = 'model_best.npz'

    def __init__(self, model, metric, out):
        self.model, self.metric = model, metric
        self.path = os.path.join(out, self.FILENAME)
        self.score, self.iteration = -math.inf, -1

    def __call__(self, trainer):
        value = trainer.observation.get('validation/main/' + self.metric)
        if value is None:
            return
        value = float(chainer.backend.CpuDevice().send(
            getattr(value, 'array', value)))
        if not value > self.score:     # never NaN
            return
        iteration = trainer.updater.iteration
        check_finite_params(self.model, '%s not written' % self.FILENAME)
        save_model(output_path(os.path.dirname(self.path), self.FILENAME),
                   self.model, best=dict(
            metric=self.metric, score=value, iteration=iteration))
        self.score, self.iteration = value, iteration

    def serialize(self, serializer):
        self.score = float(serializer('score', self.score))
        self.iteration = int(serializer('iteration', self.iteration))
        if isinstance(serializer, chainer.serializer.Deserializer):
            self._set_aside_stale()

    def _set_aside_stale(self):
        if not os.path.exists(self.path):
            return
        try:
            kept = read_meta(self.path).get('best', {}).get('iteration')
        except (ModelFileError, AttributeError):
            kept = None
        if kept != self.iteration:
            moved = set_aside(self.path, '.superseded')
            print('warning: %s is not the best model of the resumed '
                  'snapshot (iteration %s, not %d); kept as %s'
                  % (self.path, kept, self.iteration,
                     os.path.basename(moved)), file=sys.stderr)


MAX_ROWS = 8


def attention_rows(model, x, labels, sigma, omega, am_mode='joint'):
    """Image, normalised CAM, soft mask and erased image of each CAM that
    GAIN erases: one per (image, ground-truth class) in ``'per-class'``
    mode, one per image for its classes together in ``'joint'`` mode;
    images without a class have none.

    Args:
        x: ``(N, 3, H, W)`` preprocessed images; labels ``(N, K)`` multi-hot.
    Returns:
        list of ``(classes, img, cam, mask, erased_img)`` numpy arrays;
        ``classes``: the CAM's label indices (0-based columns of labels).
    """
    to_cpu = chainer.backend.CpuDevice().send
    xp = model.xp
    image, targets = erased_cams(to_cpu(labels), am_mode, x.dtype)
    if not len(image):
        return []
    x = x[xp.asarray(image)]
    cam = inference_cams(model, x, xp.asarray(targets))
    mask = soft_mask(cam, sigma, omega)
    with chainer.no_backprop_mode():
        erased = soft_erase(x, cam, sigma, omega).array
    cam, mask, erased, x = (to_cpu(v) for v in (cam, mask, erased, x))
    return [(np.flatnonzero(targets[i]), deprocess(x[i]), cam[i], mask[i],
             deprocess(erased[i])) for i in range(len(x))]


class AttentionSnapshot(chainer.training.Extension):
    """Writes ``out/attention/iter_<N>.png`` for a fixed set of examples
    ``(x, label_map, labels, ...)`` so attention can be watched as it moves: a
    row per CAM that GAIN erases (``am_mode``), named by its classes (of
    ``class_names``, background first), at most :data:`MAX_ROWS`; also to
    ``tensorboard`` (a :class:`training.tensorboard.TensorBoard`) as the
    image ``attention``."""

    def __init__(self, model, examples, sigma=0.5, omega=10.0,
                 am_mode='joint', class_names=None, tensorboard=None):
        self.model = model
        self.tensorboard = tensorboard
        self.x = np.stack([e[0] for e in examples])
        self.labels = np.stack([e[2] for e in examples])
        self.sigma, self.omega, self.am_mode = sigma, omega, am_mode
        self.class_names = class_names or ['background'] + [
            'class %d' % c for c in range(1, self.labels.shape[1] + 1)]

    def __call__(self, trainer):
        device = self.model.device
        rows = attention_rows(self.model, device.send(self.x),
                              device.send(self.labels), self.sigma,
                              self.omega, self.am_mode)[:MAX_ROWS]
        named = [(' + '.join(self.class_names[c + 1] for c in classes),
                  img, cam, mask, erased)
                 for classes, img, cam, mask, erased in rows]
        it = trainer.updater.iteration
        path = output_path(trainer.out, 'attention', 'iter_%06d.png' % it)
        visualizations.save_figure(
            visualizations.attention_grid_figure(
                named, 'iteration %d, --am-mode %s' % (it, self.am_mode)),
            path)
        if self.tensorboard is not None:
            self.tensorboard.add_image_file(trainer, 'attention', path)


class PanelPlot(extension.Extension):
    """Draws ``out/<filename>``: one panel per
    :class:`visualizations.Panel`, the values the LogReport logged (a mean
    per log interval) against the iteration, under the figure title
    ``title``. Extend it after the LogReport, with the LogReport's
    trigger; it reads the log, so a resumed run draws its whole history."""

    def __init__(self, panels, filename, title, log_report='LogReport'):
        self.panels, self.filename, self.title = panels, filename, title
        self.log_report = log_report

    def __call__(self, trainer):
        log = trainer.get_extension(self.log_report).log
        visualizations.save_figure(
            visualizations.log_figure(log, self.panels, self.title),
            output_path(trainer.out, self.filename))
