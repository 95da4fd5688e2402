"""Trainer extensions: validation of segmentation and attention quality,
and the pictures of a run (its logged terms, its attention)."""
import os

import chainer
import numpy as np
from chainer.training import extension, extensions

import visualizations
from datasets import batches, deprocess, preprocess_batch
from metrics import AttentionMetrics, gt_classes, segmentation_scores
from models import class_cams, inference_cams
from models.gain import erase, erased_cams, soft_mask


class MeanIUEvaluator(extensions.Evaluator):
    """Evaluator of a :class:`training.losses.SegmentationLoss` that also
    reports ``validation/main/mean_iu``, the mean IU of the whole pass
    (from one confusion matrix, not a mean over batches; with
    ``--communicator`` the mean of the ranks' shards)."""

    def evaluate(self):
        loss = self.get_target('main')
        n = loss.model.n_class
        loss.confusion = np.zeros((n, n), np.int64)
        try:
            result = super().evaluate()
            result['validation/main/mean_iu'] = segmentation_scores(
                loss.confusion)['mean_iu']
        finally:
            loss.confusion = None
        return result


class AttentionEvaluator(extension.Extension):
    """Attention quality on a fixed set of validation images: reports
    ``validation/main/`` ``pointing``, ``energy``, ``attention_miou`` (best
    tau) and ``zero_cams`` (the share of flat maps), as defined in
    :mod:`metrics.attention`, over the Grad-CAMs of every labelled
    (image, class) pair.

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

    def evaluate(self):
        """``{key: value}`` of :data:`KEYS` (None where undefined)."""
        metrics = AttentionMetrics(self.n_class)
        for batch in self.batches:
            x = self.model.device.send(
                preprocess_batch([img for img, _, _ in batch]))
            classes = [gt_classes(label_map, self.n_class)
                       for _, label_map, _ in batch]
            cams = class_cams(self.model, x, classes)
            for (_, label_map, _), cam, cs in zip(batch, cams, classes):
                metrics.add(label_map, dict(cams=cam, cam_classes=cs))
        result = metrics.result()
        return {k: result[k] for k in self.KEYS}

    def __call__(self, trainer):
        chainer.report({'validation/main/' + k: v
                        for k, v in self.evaluate().items() if v is not None})


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
    with chainer.no_backprop_mode():
        mask = soft_mask(cam, sigma, omega)
        erased = erase(x, mask)
    cam, mask, erased, x = (to_cpu(v.array if hasattr(v, 'array') else v)
                            for v in (cam, mask, erased, x))
    return [(np.flatnonzero(targets[i]), deprocess(x[i]), cam[i], mask[i],
             deprocess(erased[i])) for i in range(len(x))]


class AttentionSnapshot(chainer.training.Extension):
    """Writes ``out/attention/iter_<N>.png`` for a fixed set of examples
    ``(x, label_map, labels, ...)`` so attention can be watched as it moves: a
    row per CAM that GAIN erases (``am_mode``), named by its classes (of
    ``class_names``, background first), at most :data:`MAX_ROWS`."""

    def __init__(self, model, examples, sigma=0.5, omega=10.0,
                 am_mode='joint', class_names=None):
        self.model = model
        self.x = np.stack([e[0] for e in examples])
        self.labels = np.stack([e[2] for e in examples])
        self.sigma, self.omega, self.am_mode = sigma, omega, am_mode
        self.class_names = class_names or ['background'] + [
            'class %d' % c for c in range(1, self.labels.shape[1] + 1)]

    def __call__(self, trainer):
        directory = os.path.join(trainer.out, 'attention')
        os.makedirs(directory, exist_ok=True)
        device = self.model.device
        rows = attention_rows(self.model, device.send(self.x),
                              device.send(self.labels), self.sigma,
                              self.omega, self.am_mode)[:MAX_ROWS]
        named = [(' + '.join(self.class_names[c + 1] for c in classes),
                  img, cam, mask, erased)
                 for classes, img, cam, mask, erased in rows]
        it = trainer.updater.iteration
        visualizations.save_figure(
            visualizations.attention_grid_figure(
                named, 'iteration %d, --am-mode %s' % (it, self.am_mode)),
            os.path.join(directory, 'iter_%06d.png' % it))


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
            os.path.join(trainer.out, self.filename))
