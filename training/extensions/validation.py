"""Validation during training: segmentation (mean IU), classification
(mAP) and attention quality, reported under ``validation/main/`` in
percent."""
import math

import chainer
import numpy as np
from chainer.training import extension, extensions

from datasets import batches, preprocess_batch
from metrics import (AttentionMetrics, ClassificationMetrics,
                     confusion_matrix, gt_classes, segmentation_scores)
from models import class_cams


class MeanIUEvaluator(extensions.Evaluator):
    """Evaluator of a :class:`training.losses.SegmentationLoss` that also
    reports ``validation/main/mean_iu``, the mean IU of the whole pass in
    percent (from one confusion matrix, not a mean over batches; with
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
        result['validation/main/mean_iu'] = 100 * segmentation_scores(
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
    scores over a validation split in percent, as ``evaluate.py`` computes
    it (see
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
            chainer.report({'validation/main/map': 100 * value})
