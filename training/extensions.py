"""Trainer extensions: validation of segmentation and attention quality, and
a picture of the attention during training."""
import itertools
import os

import chainer
import matplotlib
import numpy as np
from chainer.training import extension, extensions

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # NOQA

from datasets import deprocess, preprocess  # NOQA
from metrics import AttentionMetrics, class_cams, gt_classes  # NOQA
from metrics import segmentation_scores  # NOQA
from models import cam_from_features, normalize_cam  # NOQA
from models.gain import erase, erased_cams, soft_mask  # NOQA
from training.plots import save_figure, show_cam  # NOQA


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
        dataset: raw ``(img, lbl)`` examples with ``n_class``; the first
            ``n_images`` are used.
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
        self.batches = []
        for _, group in itertools.groupby(examples,
                                          key=lambda e: e[0].shape):
            group = list(group)
            self.batches += [group[i:i + batch_size]
                             for i in range(0, len(group), batch_size)]

    def evaluate(self):
        """``{key: value}`` of :data:`KEYS` (None where undefined)."""
        metrics = AttentionMetrics(self.n_class)
        for batch in self.batches:
            x = self.model.device.send(
                np.stack([preprocess(img) for img, _ in batch]))
            classes = [gt_classes(lbl, self.n_class) for _, lbl in batch]
            cams = class_cams(self.model, x, classes)
            for (_, lbl), cam, cs in zip(batch, cams, classes):
                metrics.add(lbl, dict(cams=cam, cam_classes=cs))
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
    with chainer.using_config('train', False):
        with chainer.no_backprop_mode():  # only the head needs a graph
            features = model.features(x).array
        cam = normalize_cam(cam_from_features(model, features,
                                              xp.asarray(targets),
                                              x.shape[2:]))
        with chainer.no_backprop_mode():
            mask = soft_mask(cam, sigma, omega)
            erased = erase(x, mask)
    cam, mask, erased, x = (to_cpu(v.array if hasattr(v, 'array') else v)
                            for v in (cam, mask, erased, x))
    return [(np.flatnonzero(targets[i]), deprocess(x[i]), cam[i], mask[i],
             deprocess(erased[i])) for i in range(len(x))]


def save_attention_grid(rows, path, title=''):
    """One row per CAM, named by its class: image | CAM | mask | erased
    image. ``rows``: ``(name, img, cam, mask, erased_img)``."""
    if not rows:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.text(0.5, 0.5, 'no image with a class to erase', ha='center',
                va='center')
        ax.set_axis_off()
    else:
        fig, axes = plt.subplots(len(rows), 4, figsize=(9, 2.2 * len(rows)),
                                 squeeze=False)
    for r, (name, img, cam, mask, erased) in enumerate(rows):
        axes[r, 0].imshow(img)
        axes[r, 0].set_title(name, fontsize=10, fontweight='bold')
        show_cam(fig, axes[r, 1], img, cam, alpha=0.6)
        axes[r, 2].imshow(img)
        axes[r, 2].imshow(mask, cmap='gray', vmin=0, vmax=1, alpha=0.6)
        axes[r, 3].imshow(erased)
        for c, ax in enumerate(axes[r]):
            ax.set_axis_off()
            if r == 0 and c:
                ax.set_title(('', 'Grad-CAM', 'mask T', 'erased I*')[c])
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))
    save_figure(fig, path)


class AttentionSnapshot(chainer.training.Extension):
    """Writes ``out/attention/iter_<N>.png`` for a fixed set of examples
    ``(x, lbl, labels, ...)`` so attention can be watched as it moves: a
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
        save_attention_grid(named, os.path.join(directory,
                                                'iter_%06d.png' % it),
                            'iteration %d, --am-mode %s' % (it,
                                                            self.am_mode))
