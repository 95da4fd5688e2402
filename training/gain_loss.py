"""The GAIN objective on FCN8s: classification, attention mining, GAIN_ext
and segmentation terms of one batch."""
import chainer
import chainer.functions as F

from models import attention_maps
from models.gain import erased_cams, soft_erase

AM_MODES = ('per-class', 'joint')
CAM_GRADS = ('activations', 'full', 'mask-only')
AM_SCORES = ('sigmoid', 'softmax')
AM_AVERAGES = ('image', 'pair')


class GAINLoss(chainer.Chain):
    """``l_cl L_cl + l_am L_am + l_seg L_seg + l_ext L_ext`` of a batch.

    Args:
        model (FCN8s): the network (its head should be frozen).
        am_mode: ``'per-class'``: one CAM and one erased image per
            ground-truth class; ``'joint'``: one CAM of the summed labelled
            scores and one erased image per image.
        cam_grad: how the attention map is differentiated:
            ``'activations'``: Grad-CAM weights are constants, gradients reach
            the trunk through A and through the attention-mining pass;
            ``'full'``: the weights too (double back-propagation);
            ``'mask-only'``: the attention-mining pass's own parameter
            gradients are dropped, L_am trains only through the mask.
        am_score: ``'sigmoid'`` (the paper) or ``'softmax'`` scores of the
            erased image.
        am_average: ``'image'``: L_am is the mean over the images (with a
            class) of the mean score of each image's erased classes, as the
            paper's eq. 4 (1/n over an image's n labels); ``'pair'``: the
            mean over (image, class) pairs, so that an image with three
            classes weighs three times.
        sigma, omega: soft-mask threshold and sharpness.
        weights: dict of ``cl``, ``am``, ``seg``, ``ext`` loss weights.
        am_warmup, ext_warmup: ``(value, 'iteration' | 'epoch')`` during
            which the term is off.
        head_dropout (bool): keep the (frozen) head's dropout in the L_cl
            and attention-mining passes. Off by default, this port's
            choice (the paper does not say; docs/DEVIATIONS.md): the head
            is not trained here, and its dropout would only add noise to
            the scores whose gradients train the trunk (about 0.035 sd on
            an erased image's score). Grad-CAM never uses it.
        am_on_negatives (bool): L_am also takes the images without a
            foreground label, each erased where the Grad-CAM of its
            top-scoring class ``c = argmax_k s_k(I)`` (of the L_cl pass, a
            constant) looks, as if ``c`` were its one label: the class the
            network most believes in on an image that has none must lie
            where its attention is. L_ext never takes these CAMs. Off by
            default (the paper: positives only).

    ``forward(x, label_map, labels, supervised, sizes=None)`` takes images
    ``(N, 3, H, W)``, label maps ``(N, H, W)`` (-1 ignored), multi-hot
    labels ``(N, K)``, ``supervised``, a bool ``(N,)`` marking the images
    with pixel supervision (GAIN_ext), and for a padded batch of images of
    different sizes each image's ``(height, width)`` ``(N, 2)`` (see
    :mod:`models.padding`: every term is then that of the images alone),
    and reports ``cl``, ``am``, ``ext``, ``seg`` and ``loss``.

    A batch may mix images with a mask and images with image-level labels
    only (label map -1 everywhere): L_cl and L_am take every image; L_seg
    and L_ext are means over the labelled pixels of the batch and of its
    ``supervised`` images, 0 (with a zero gradient) without any.
    """

    def __init__(self, model, am_mode='per-class', cam_grad='activations',
                 am_score='sigmoid', sigma=0.5, omega=10.0, weights=None,
                 am_warmup=(0, 'iteration'), ext_warmup=(0, 'iteration'),
                 head_dropout=False, am_average='image',
                 am_on_negatives=False):
        super().__init__()
        for name, value, choices in (('am_mode', am_mode, AM_MODES),
                                     ('cam_grad', cam_grad, CAM_GRADS),
                                     ('am_score', am_score, AM_SCORES),
                                     ('am_average', am_average, AM_AVERAGES)):
            if value not in choices:
                raise ValueError('%s must be one of %s' % (name, choices))
        self.am_mode, self.cam_grad = am_mode, cam_grad
        self.am_score, self.am_average = am_score, am_average
        self.sigma, self.omega = sigma, omega
        self.weights = dict(cl=1.0, am=1.0, seg=1.0, ext=0.0)
        self.weights.update(weights or {})
        self.warmup = dict(am=am_warmup, ext=ext_warmup)
        self.head_dropout, self.am_on_negatives = head_dropout, am_on_negatives
        self.progress = dict(iteration=0, epoch=0.0)  # set by the updater
        with self.init_scope():
            self.model = model

    def active(self, term):
        if self.weights[term] == 0:
            return False
        value, unit = self.warmup.get(term, (0, 'iteration'))
        return self.progress[unit] >= value

    def head_mode(self):
        """Config of the passes through the frozen head: no dropout unless
        ``head_dropout`` (the trunk has none to switch)."""
        return chainer.using_config(
            'train', chainer.config.train and self.head_dropout)

    def forward(self, x, label_map, labels, supervised, sizes=None):
        model, xp = self.model, self.model.xp
        features = model.features(x, sizes)
        with self.head_mode():
            logits = model.head(features, sizes)
        terms = {'cl': F.sigmoid_cross_entropy(logits, labels)}
        zero = chainer.Variable(xp.zeros((), dtype=x.dtype))
        terms['am'] = terms['ext'] = zero
        if self.active('am') or self.active('ext'):
            terms.update(self.attention_terms(
                x, label_map, labels, supervised, features, sizes,
                logits.array))
        terms['seg'] = (F.softmax_cross_entropy(model.segment(x, sizes),
                                                label_map)
                        if self.weights['seg'] else zero)
        loss = sum((self.weights[k] * v for k, v in terms.items()
                    if self.weights[k]), zero)
        chainer.report(dict(terms, loss=loss), self)
        return loss

    def attention_terms(self, x, label_map, labels, supervised, features,
                        sizes=None, logits=None):
        """L_am and L_ext; 0 for a batch without foreground labels (and,
        with ``am_on_negatives``, without images)."""
        xp = self.model.xp
        labels, supervised = xp.asarray(labels), xp.asarray(supervised)
        if self.am_on_negatives:
            labels, negative = self.with_negatives(labels, logits)
            supervised = supervised & ~negative
        rows, targets = erased_cams(labels, self.am_mode, x.dtype)
        out = {}
        if len(rows) == 0:
            return out
        if sizes is not None:
            sizes = sizes[chainer.backend.CpuDevice().send(rows)]
        cam = attention_maps(self.model, features[rows], targets, x.shape[2:],
                             double_backprop=self.cam_grad == 'full',
                             sizes=sizes)
        if self.active('am'):
            erased = soft_erase(x[rows], cam, self.sigma, self.omega)
            out['am'] = self.attention_mining(
                erased, targets * self.pair_weights(labels, rows)[:, None],
                sizes)
        if self.active('ext'):    # 0 without supervised rows; no host sync
            out['ext'] = self.pixel_supervision(
                cam, label_map[rows], targets, supervised[rows])
        return out

    @staticmethod
    def with_negatives(labels, logits):
        """``(labels, negative)``: the multi-hot ``labels`` ``(N, K)`` with
        each image without a label given its top-scoring class (argmax of
        ``logits`` ``(N, K)``), and ``negative`` ``(N,)`` bool, those
        images (see ``am_on_negatives``)."""
        xp = chainer.backend.get_array_module(labels)
        negative = ~labels.astype(bool).any(axis=1)
        top = xp.zeros_like(labels)
        top[xp.arange(len(labels)), logits.argmax(axis=1)] = 1
        return xp.where(negative[:, None], top, labels), negative

    def pair_weights(self, labels, rows):
        """``(M,)``: the weight of each erased image's classes in L_am (see
        ``am_average``); ``rows`` ``(M,)``: their images."""
        xp = self.model.xp
        n = xp.asarray(labels).sum(axis=1).astype(self.model.conv1_1.W.dtype)
        if self.am_average == 'pair':
            return xp.full(len(rows), 1 / n.sum(), n.dtype)
        # no host sync: the number of images with a class stays on device
        return 1 / (n[rows] * (n > 0).sum())

    def attention_mining(self, erased, weights, sizes=None):
        """Weighted sum of the scores of the erased classes on the erased
        images; ``weights`` ``(M, K)``: each erased class's weight (0 for
        the classes not erased), summing to 1; ``sizes``: the images' in
        a padded batch."""
        def loss_of(scores):
            if self.am_score == 'softmax':
                p = F.softmax(scores)
            else:
                p = F.sigmoid(scores)
            return F.sum(p * weights)

        if self.cam_grad != 'mask-only':
            with self.head_mode():
                return loss_of(self.model.classify(erased, sizes))
        # Value of L_am, gradient only through the mask: the erased image
        # becomes a leaf of the attention-mining pass, and the loss is
        # linearised around it.
        leaf = chainer.Variable(erased.array)
        with self.head_mode():
            loss = loss_of(self.model.classify(leaf, sizes))
        g, = chainer.grad([loss], [leaf])
        return (F.sum(erased * g.array) +
                (loss.array - (erased.array * g.array).sum()))

    def pixel_supervision(self, cam, label_map, targets, supervised_rows):
        """``mean (A_norm - H)^2`` over the labelled pixels of the images
        with pixel supervision; ``H`` is the mask of the CAM's classes."""
        xp = self.model.xp
        fg = label_map[:, None] == (xp.arange(targets.shape[1]) + 1)[None, :,
                                                                None, None]
        target = (fg * targets[:, :, None, None].astype(bool)).any(axis=1)
        weight = ((label_map >= 0) &
                  supervised_rows[:, None, None]).astype(cam.dtype)
        return F.sum((cam - target.astype(cam.dtype)) ** 2 * weight) / \
            xp.maximum(weight.sum(), 1)

    def evaluate(self, x, label_map, labels, sizes=None, seg=True):
        """Validation terms that need no gradient: ``cl`` and, unless not
        ``seg`` (a validation split without masks), ``seg`` (``sizes``: as
        :meth:`forward`'s). Every batch reports the same terms: a
        data-parallel evaluator averages them over the ranks key by key."""
        terms = {'cl': F.sigmoid_cross_entropy(
            self.model.classify(x, sizes), labels)}
        if seg:
            terms['seg'] = F.softmax_cross_entropy(
                self.model.segment(x, sizes), label_map)
        chainer.report(terms, self)


def parse_warmup(text):
    """``'100'`` or ``'100i'`` -> ``(100, 'iteration')``; ``'2e'`` ->
    ``(2.0, 'epoch')``."""
    text = str(text).strip()
    try:
        if text.endswith('e'):
            value, unit = float(text[:-1]), 'epoch'
        else:
            value, unit = int(text.rstrip('i')), 'iteration'
    except ValueError:
        raise ValueError('warm-up must be N (iterations) or Ne (epochs), '
                         'got %r' % text)
    if not value >= 0 or value == float('inf'):
        raise ValueError('warm-up must be a finite number >= 0, got %r' % text)
    return value, unit
