"""FCN8s with a GAIN classification head.

The segmentation trunk has the link names and shapes of ``fcn.models.FCN8s``
so ``fcn8s_from_caffe.npz`` loads into it; ``width`` thins every channel
count (tests and the CPU demo).
"""
import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np

from models.padding import inside, masked_mean, pooled
from models.precision import apply_link, cast

TRUNK = ('conv1_1', 'conv1_2', 'conv2_1', 'conv2_2',
         'conv3_1', 'conv3_2', 'conv3_3',
         'conv4_1', 'conv4_2', 'conv4_3',
         'conv5_1', 'conv5_2', 'conv5_3')
POOLED = ('conv1_2', 'conv2_2', 'conv3_3', 'conv4_3')  # a 2x2 pool after
CLASSIFICATION_HEAD = ('fc6_cl', 'fc7_cl', 'score_cl')
HEAD_INIT = chainer.initializers.LeCunNormal()


class BilinearDeconvWeight(chainer.initializer.Initializer):
    """Bilinear up-sampling kernel on the diagonal, zeros elsewhere.

    Same initial values as the caffe FCN ``surgery.py`` filter.
    """

    def __call__(self, array):
        n_in, n_out, k, _ = array.shape
        factor = (k + 1) // 2
        center = factor - 1 if k % 2 == 1 else factor - 0.5
        og = np.arange(k)
        filt = 1 - np.abs(og - center) / factor
        xp = chainer.backend.get_array_module(array)
        array[...] = 0
        idx = np.arange(min(n_in, n_out))
        array[idx, idx] = xp.asarray(np.outer(filt, filt), dtype=array.dtype)


class FCN8s(chainer.Chain):
    """FCN8s (Long et al.) plus the multi-label head that GAIN trains against.

    Args:
        n_class (int): number of segmentation classes, background included.
            The classification head predicts the ``n_class - 1`` foreground
            labels.
        width (float): multiplier of every channel count (1.0 is the
            published FCN8s).
    """

    #: Input pixels per cell of ``features`` (four 2x2 max poolings).
    feature_stride = 16

    def __init__(self, n_class=21, width=1.0):
        super().__init__()
        if n_class < 2:
            raise ValueError('n_class must be >= 2, got %r' % n_class)
        if not 0 < width <= 1:
            raise ValueError('width must be in (0, 1], got %r' % width)
        self.n_class = int(n_class)
        self.width = float(width)

        def ch(c):
            return max(1, int(round(c * width)))

        c1, c2, c3, c4, c5, c6 = (ch(64), ch(128), ch(256), ch(512), ch(512),
                                  ch(4096))
        self.channels = dict(pool3=c3, pool4=c4, conv5_3=c5, fc=c6)
        conv = dict(initialW=chainer.initializers.HeNormal())
        zero = dict(initialW=chainer.initializers.Zero())
        up = dict(nobias=True, initialW=BilinearDeconvWeight())
        # The input is in pixel units (mean-subtracted, std ~60), not unit
        # variance: scale conv1_1 so that a model trained from scratch
        # starts with activations, and logits, of order one.
        pixels = dict(initialW=chainer.initializers.HeNormal(scale=1 / 60.))
        with self.init_scope():
            self.conv1_1 = L.Convolution2D(3, c1, 3, 1, 100, **pixels)
            self.conv1_2 = L.Convolution2D(c1, c1, 3, 1, 1, **conv)
            self.conv2_1 = L.Convolution2D(c1, c2, 3, 1, 1, **conv)
            self.conv2_2 = L.Convolution2D(c2, c2, 3, 1, 1, **conv)
            self.conv3_1 = L.Convolution2D(c2, c3, 3, 1, 1, **conv)
            self.conv3_2 = L.Convolution2D(c3, c3, 3, 1, 1, **conv)
            self.conv3_3 = L.Convolution2D(c3, c3, 3, 1, 1, **conv)
            self.conv4_1 = L.Convolution2D(c3, c4, 3, 1, 1, **conv)
            self.conv4_2 = L.Convolution2D(c4, c4, 3, 1, 1, **conv)
            self.conv4_3 = L.Convolution2D(c4, c4, 3, 1, 1, **conv)
            self.conv5_1 = L.Convolution2D(c4, c5, 3, 1, 1, **conv)
            self.conv5_2 = L.Convolution2D(c5, c5, 3, 1, 1, **conv)
            self.conv5_3 = L.Convolution2D(c5, c5, 3, 1, 1, **conv)
            self.fc6 = L.Convolution2D(c5, c6, 7, 1, 0, **conv)
            self.fc7 = L.Convolution2D(c6, c6, 1, 1, 0, **conv)
            self.score_fr = L.Convolution2D(c6, n_class, 1, 1, 0, **zero)
            self.score_pool3 = L.Convolution2D(c3, n_class, 1, 1, 0, **zero)
            self.score_pool4 = L.Convolution2D(c4, n_class, 1, 1, 0, **zero)
            self.upscore2 = L.Deconvolution2D(n_class, n_class, 4, 2, 0, **up)
            self.upscore_pool4 = L.Deconvolution2D(
                n_class, n_class, 4, 2, 0, **up)
            self.upscore8 = L.Deconvolution2D(
                n_class, n_class, 16, 8, 0, **up)
            # GAIN head: GAP(pool5) -> fc6_cl -> fc7_cl -> score_cl.
            self.fc6_cl = L.Linear(c5, c6, initialW=HEAD_INIT)
            self.fc7_cl = L.Linear(c6, c6, initialW=HEAD_INIT)
            self.score_cl = L.Linear(c6, n_class - 1, initialW=HEAD_INIT)
        #: What the layers compute in, one of
        #: :data:`models.precision.PRECISIONS`; the methods take and return
        #: the weights' dtype (float32).
        self.precision = 'float32'
        #: The training stages that trained the classification head, oldest
        #: first (saved in model files); empty while it holds its random
        #: initial weights.
        self.head_trained_by = []

    def reset_head(self):
        """Draw fresh initial weights for the classification head."""
        for name in CLASSIFICATION_HEAD:
            link = getattr(self, name)
            HEAD_INIT(link.W.array)
            link.b.array[...] = 0
        self.head_trained_by = []

    # -- trunk ---------------------------------------------------------------
    def _trunk(self, x, conv1_pad, sizes=None):
        """conv1_1 ... conv5_3; returns pool3, pool4, relu(conv5_3) and,
        with ``sizes`` (a padded batch, see :mod:`models.padding`), the
        valid size ``(N, 2)`` of conv5_3 (else None), every map zeroed
        beyond its valid size."""
        h, pools, valid = x, [], None
        if sizes is not None:       # conv1_1: 3x3, output side + 2 pad - 2
            valid = np.asarray(sizes) + 2 * conv1_pad - 2
        for name in TRUNK:
            h = inside(F.relu(self._apply(
                name, h, conv1_pad if name == 'conv1_1' else None)), valid)
            if name in POOLED:
                h = F.max_pooling_2d(h, 2, 2)
                valid = None if valid is None else pooled(valid)
                pools.append(h)
        return pools[2], pools[3], h, valid

    # -- segmentation --------------------------------------------------------
    def segment(self, x, sizes=None):
        """Per-pixel class scores.

        Args:
            x: ``(N, 3, H, W)`` caffe-preprocessed images.
            sizes: ``(N, 2)`` each image's own size in a padded batch
                (:mod:`models.padding`), None when they fill ``(H, W)``.
        Returns:
            ``(N, n_class, H, W)`` Variable, fcn's FCN8s forward; with
            ``sizes`` each image's scores inside its size are those of the
            image alone (outside they mean nothing; the loss ignores them).
        """
        pool3, pool4, conv5_3, v5 = self._trunk(x, 100, sizes)
        h = F.max_pooling_2d(conv5_3, 2, 2)
        h = F.dropout(F.relu(self._apply('fc6', h)), ratio=.5)
        h = F.dropout(F.relu(self._apply('fc7', h)), ratio=.5)
        # Valid sizes: fc6 (7x7, no pad) takes 6 off pool5; each
        # deconvolution (kernel 2s, stride s) makes n cells s n + s. Past a
        # layer with a bias, the cells beyond are zeroed before the next
        # deconvolution could spread them into the image.
        fr = None if sizes is None else pooled(v5) - 6
        h = inside(self._apply('score_fr', h), fr)
        upscore2 = self._apply('upscore2', h)
        h = self._apply('score_pool4', pool4)
        up2 = None if sizes is None else 2 * fr + 2
        h = inside(upscore2 + _crop(h, 5, upscore2.shape[2:]), up2)
        upscore_pool4 = self._apply('upscore_pool4', h)
        h = self._apply('score_pool3', pool3)
        up4 = None if sizes is None else 2 * up2 + 2
        h = inside(
            upscore_pool4 + _crop(h, 9, upscore_pool4.shape[2:]), up4)
        score = _crop(self._apply('upscore8', h), 31, x.shape[2:])
        return self._output(score)

    # -- classification ------------------------------------------------------
    def features(self, x, sizes=None):
        """``relu(conv5_3)`` of the classification stream (conv1_1 pad 1).

        Args:
            x: ``(N, 3, H, W)`` caffe-preprocessed images.
            sizes: ``(N, 2)`` each image's own size in a padded batch
                (:mod:`models.padding`), None when they fill ``(H, W)``.
        Returns:
            ``(N, C5, ceil(H/16), ceil(W/16))`` Variable, where Grad-CAM is
            taken; cell ``(i, j)`` is centred on pixel
            ``(16 i + 7.5, 16 j + 7.5)``. With ``sizes``, image ``i``'s
            first ``ceil(sizes[i] / 16)`` cells are those of the image
            alone, the others 0.
        """
        return self._output(self._trunk(x, 1, sizes)[2])

    def head(self, conv5_3, sizes=None):
        """Multi-label logits ``(N, n_class - 1)`` from ``relu(conv5_3)``;
        with ``sizes`` (the images', as :meth:`features`) the global
        average pooling takes each image's own cells only."""
        h = F.max_pooling_2d(conv5_3, 2, 2)
        if sizes is None:
            h = F.mean(h, axis=(2, 3))
        else:       # pool5: four poolings to conv5_3 and one more
            h = masked_mean(h, pooled(
                -(-np.asarray(sizes) // self.feature_stride)))
        h = F.dropout(F.relu(self._apply('fc6_cl', h)), ratio=.5)
        h = F.dropout(F.relu(self._apply('fc7_cl', h)), ratio=.5)
        return self._output(self._apply('score_cl', h))

    def _apply(self, name, h, pad=None):
        return apply_link(getattr(self, name), h, self.precision, pad)

    def _output(self, h):
        """``h`` back in the weights' dtype (from float16 layers)."""
        return cast(h, self.conv1_1.W.dtype)

    def classify(self, x, sizes=None):
        """Multi-label logits ``(N, n_class - 1)``, background excluded
        (``sizes``: see :meth:`features`)."""
        return self.head(self.features(x, sizes), sizes)

    def predict(self, x):
        """Segmentation ``(N, H, W)`` and multi-label logits ``(N, K)`` of
        preprocessed images ``(N, 3, H, W)`` on the model's device, as
        numpy arrays (test mode, no graph)."""
        with chainer.using_config('train', False), \
                chainer.no_backprop_mode():
            seg = self.segment(x).array.argmax(axis=1)
            logits = self.classify(x).array
        to_cpu = chainer.backend.CpuDevice().send
        return to_cpu(seg), to_cpu(logits)

    def links_named(self, names):
        return [getattr(self, n) for n in names]

    def head_links(self):
        """The links of the classification head (frozen by GAIN)."""
        return self.links_named(CLASSIFICATION_HEAD)

    def trunk_links(self):
        """Every link but the classification head's (frozen while the
        head is trained)."""
        return [l for l in self.children() if l.name not in
                CLASSIFICATION_HEAD]


def _crop(h, offset, size):
    return h[:, :, offset:offset + size[0], offset:offset + size[1]]
