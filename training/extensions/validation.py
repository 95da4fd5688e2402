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
    reports ``validation/main/mean_iu`` of the whole pass in percent (one
    confusion matrix, not a mean over batches; with ChainerMN the ranks'
    mean)."""

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
    """Reports :data:`KEYS` of :mod:`metrics.attention` (in percent) under
    ``validation/main/``, over the first ``n_images`` of a masked
    ``dataset`` of raw ``(img, label_map, labels)`` examples; before the
    first update, the result of :meth:`evaluate_at_start` if any."""
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
        """The attention figures, as fractions (None: undefined)."""
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
        """:meth:`evaluate`, kept for the log's iteration 0."""
        self.at_start = self.evaluate()
        return self.at_start

    def __call__(self, trainer):
        result = (self.at_start if trainer.is_before_training and
                  self.at_start is not None else self.evaluate())
        chainer.report({'validation/main/' + k: 100 * result[k]
                        for k in self.KEYS if result[k] is not None})


class MeanAPEvaluator(extension.Extension):
    """Reports ``validation/main/map``, the head's mAP in percent (as
    ``evaluate.py``) over a ``dataset`` of raw ``(img, label_map, labels)``
    examples; nothing where no class has a positive image."""
    trigger = 100, 'iteration'
    priority = extension.PRIORITY_WRITER

    def __init__(self, model, dataset, batch_size=8):
        self.model, self.dataset, self.batch_size = model, dataset, batch_size

    def evaluate(self):
        """The mAP (None: undefined)."""
        metrics = ClassificationMetrics(self.dataset.n_class)
        to_cpu = chainer.backend.CpuDevice().send
        with chainer.using_config('train', False), chainer.no_backprop_mode():
            for batch in batches(self.dataset, self.batch_size):
                x = self.model.device.send(
                    preprocess_batch([img for img, _, _ in batch]))
                logits = to_cpu(self.model.classify(x).array)
                for (_, label_map, labels), scores in zip(batch, logits):
                    metrics.add(label_map, dict(logits=scores, labels=labels))
        value = metrics.result()['map']
        return value if value is not None and math.isfinite(value) else None

    def __call__(self, trainer):
        value = self.evaluate()
        if value is not None:
            chainer.report({'validation/main/map': 100 * value})
