"""Trainer extensions: validation of segmentation and attention quality,
and the pictures of a run (its logged terms, its attention)."""
import chainer
import numpy as np
from chainer.training import extension, extensions

import visualizations
from datasets import batches, deprocess, preprocess_batch
from metrics import AttentionMetrics, gt_classes, segmentation_scores
from models import class_cams, inference_cams
from models.gain import erase, erased_cams, soft_mask
from runtime.outdir import output_path


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


class PointingChance(object):
    """The chance level of the pointing game: what a map scores whose
    peak falls on a labelled pixel drawn at random, i.e. per (image,
    class) pair the share of the image's labelled pixels that are of the
    class, averaged per class, then over the classes (as the pointing game
    is, see :mod:`metrics.attention`). ``add(label_map, outputs)`` and
    ``result()`` like the accumulators of :mod:`metrics`."""

    needs_cams = False

    def __init__(self, n_class):
        self.n_class = n_class
        self.share = np.zeros((2, n_class - 1))     # sum, count

    def add(self, label_map, outputs=None):
        labelled = label_map[label_map >= 0]
        if not labelled.size:
            return
        counts = np.bincount(labelled.ravel(), minlength=self.n_class)
        for c in gt_classes(label_map, self.n_class):
            self.share[:, c - 1] += counts[c] / float(labelled.size), 1

    def result(self):
        seen = self.share[1] > 0
        return dict(pointing_chance=float(np.mean(
            self.share[0][seen] / self.share[1][seen])) if seen.any()
            else None)


#: The share of all-zero Grad-CAMs above which a model is flagged. The
#: demo's models (``make demo``: the stand-in, the classifier on it, GAIN
#: and GAIN_ext for two seeds) have at most 0.7 % on the shapes test split
#: and none on val; a trunk trained for segmentation only gave 14 %.
ZERO_CAMS_WARNING = 0.05
#: A pointing game below this multiple of its chance level is flagged:
#: chance is 2.9 % on shapes, the demo's models point 38 to 59 %, the
#: weak trunk of models/pretrained/README.md 3.3 %.
POINTING_OVER_CHANCE = 2.0


def attention_warnings(result):
    """What makes a model's Grad-CAMs useless for GAIN, as phrases (empty
    if nothing): more than :data:`ZERO_CAMS_WARNING` all-zero maps, or a
    pointing game at chance: below :data:`POINTING_OVER_CHANCE` times its
    chance level (:class:`PointingChance`);
    ``result``: fractions as :class:`AttentionEvaluator.evaluate` or
    evaluate.py give them."""
    problems = []
    zero, pointing = result.get('zero_cams'), result.get('pointing')
    chance = result.get('pointing_chance')
    if zero is not None and zero > ZERO_CAMS_WARNING:
        problems.append('%.1f %% of its Grad-CAMs are all zero (more than '
                        '%.0f %%: no class evidence at conv5_3)'
                        % (100 * zero, 100 * ZERO_CAMS_WARNING))
    if (pointing is not None and chance is not None and
            pointing < POINTING_OVER_CHANCE * chance):
        problems.append('its pointing game (%.1f %%) is at chance (%.1f %%, '
                        'a peak on a random labelled pixel; less than %g '
                        'times that)' % (100 * pointing, 100 * chance,
                                         POINTING_OVER_CHANCE))
    return problems


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
        dataset: raw ``(img, label_map)`` examples with ``n_class``; the first
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
        self.batches = list(batches(examples, batch_size))
        self.at_start = None

    def evaluate(self):
        """``{key: value}`` of :data:`KEYS` and ``pointing_chance``, as
        fractions (None where undefined)."""
        metrics = AttentionMetrics(self.n_class)
        chance = PointingChance(self.n_class)
        for batch in self.batches:
            x = self.model.device.send(
                preprocess_batch([img for img, _ in batch]))
            classes = [gt_classes(label_map, self.n_class)
                       for _, label_map in batch]
            cams = class_cams(self.model, x, classes)
            for (_, label_map), cam, cs in zip(batch, cams, classes):
                metrics.add(label_map, dict(cams=cam, cam_classes=cs))
                chance.add(label_map)
        result = metrics.result()
        return dict({k: result[k] for k in self.KEYS}, **chance.result())

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
            output_path(trainer.out, 'attention', 'iter_%06d.png' % it))


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
