"""FCN8s with a GAIN classification head; the segmentation network has
``fcn.models.FCN8s``' link names and shapes, so ``fcn8s_from_caffe.npz``
loads into it."""
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
    """Bilinear up-sampling kernel on the diagonal, zeros elsewhere (the
    caffe FCN ``surgery.py`` filter)."""

    def __call__(self, array):
        n_in, n_out, k, _ = array.shape
        factor = (k + 1) // 2
        center = factor - 1 if k % 2 == 1 else factor - 0.5
        filt = 1 - np.abs(np.arange(k) - center) / factor
        xp = chainer.backend.get_array_module(array)
        array[...] = 0
        idx = np.arange(min(n_in, n_out))
        array[idx, idx] = xp.asarray(np.outer(filt, filt), dtype=array.dtype)


class FCN8s(chainer.Chain):
    """FCN8s (Long et al., CVPR 2015) plus the multi-label head GAIN
    trains against: ``n_class`` segmentation classes (background
    included; the head predicts the ``n_class - 1`` others), ``width``
    multiplies every channel count (1.0: the published FCN8s)."""

    feature_stride = 16     # input pixels per cell of features()

    def __init__(self, n_class=21, width=1.0):
        super().__init__()
        if n_class < 2:
            raise ValueError('n_class must be >= 2, got %r' % n_class)
        if not 0 < width <= 1:
            raise ValueError('width must be in (0, 1], got %r' % width)
        self.n_class = int(n_class)
        self.width = float(width)
        c1, c2, c3, c4, c5, c6 = (max(1, int(round(c * width)))
                                  for c in (64, 128, 256, 512, 512, 4096))
        trunk = (c1, c1, c2, c2, c3, c3, c3, c4, c4, c4, c5, c5, c5)
        conv = dict(initialW=chainer.initializers.HeNormal())
        zero = dict(initialW=chainer.initializers.Zero())
        up = dict(nobias=True, initialW=BilinearDeconvWeight())
        # The input is in pixel units (mean-subtracted, std ~60), not unit
        # variance: scale conv1_1 so that a model trained from scratch
        # starts with activations, and logits, of order one.
        pixels = dict(initialW=chainer.initializers.HeNormal(scale=1 / 60.))
        with self.init_scope():
            for k, name in enumerate(TRUNK):    # conv1_1 pads by 100
                setattr(self, name, L.Convolution2D(
                    trunk[k - 1] if k else 3, trunk[k], 3, 1,
                    1 if k else 100, **(conv if k else pixels)))
            self.fc6 = L.Convolution2D(c5, c6, 7, 1, 0, **conv)
            self.fc7 = L.Convolution2D(c6, c6, 1, 1, 0, **conv)
            self.score_fr = L.Convolution2D(c6, n_class, 1, 1, 0, **zero)
            self.score_pool3 = L.Convolution2D(c3, n_class, 1, 1, 0, **zero)
            self.score_pool4 = L.Convolution2D(c4, n_class, 1, 1, 0, **zero)
            self.upscore2 = L.Deconvolution2D(n_class, n_class, 4, 2, 0, **up)
            self.upscore_pool4 = L.Deconvolution2D(
                n_class, n_class, 4, 2, 0, **up)
            self.upscore8 = L.Deconvolution2D(n_class, n_class, 16, 8, 0, **up)
            # GAIN head: GAP(pool5) -> fc6_cl -> fc7_cl -> score_cl.
            self.fc6_cl = L.Linear(c5, c6, initialW=HEAD_INIT)
            self.fc7_cl = L.Linear(c6, c6, initialW=HEAD_INIT)
            self.score_cl = L.Linear(c6, n_class - 1, initialW=HEAD_INIT)
        #: What the layers compute in (models.precision.PRECISIONS); the
        #: methods take and return float32.
        self.precision = 'float32'
        #: The stages that trained the head, oldest first (empty: its
        #: random start); saved in model files.
        self.head_trained_by = []

    def reset_head(self):
        """Draw fresh initial weights for the classification head."""
        for name in CLASSIFICATION_HEAD:
            link = getattr(self, name)
            HEAD_INIT(link.W.array)
            link.b.array[...] = 0
        self.head_trained_by = []

    def _trunk(self, x, conv1_pad, sizes=None):
        """pool3, pool4, relu(conv5_3) and, with ``sizes`` (a padded batch,
        :mod:`models.padding`), conv5_3's valid size ``(N, 2)``."""
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

    def segment(self, x, sizes=None):
        """Scores ``(N, n_class, H, W)`` of caffe-preprocessed ``x`` ``(N, 3,
        H, W)``; ``sizes`` ``(N, 2)``: each image's own size in a padded
        batch (:mod:`models.padding`), inside which its scores are those
        of the image alone."""
        pool3, pool4, conv5_3, v5 = self._trunk(x, 100, sizes)
        h = F.max_pooling_2d(conv5_3, 2, 2)
        h = F.dropout(F.relu(self._apply('fc6', h)), ratio=.5)
        h = F.dropout(F.relu(self._apply('fc7', h)), ratio=.5)
        # Valid sizes: fc6 (7x7, no pad) takes 6 off pool5; each
        # deconvolution (kernel 2s, stride s) makes n cells s n + s. Past a
        # layer with a bias, the cells beyond are zeroed before the next
        # deconvolution could spread them into the image.
        valid = None if sizes is None else pooled(v5) - 6
        h = inside(self._apply('score_fr', h), valid)
        for up, score, pool, offset in (('upscore2', 'score_pool4', pool4, 5),
                                        ('upscore_pool4', 'score_pool3',
                                         pool3, 9)):
            h = self._apply(up, h)
            valid = None if sizes is None else 2 * valid + 2
            h = inside(h + _crop(self._apply(score, pool), offset,
                                 h.shape[2:]), valid)
        score = _crop(self._apply('upscore8', h), 31, x.shape[2:])
        return self._output(score)

    def features(self, x, sizes=None):
        """``relu(conv5_3)`` ``(N, C5, ceil(H/16), ceil(W/16))`` of the
        classification stream (conv1_1 pad 1), where Grad-CAM is taken;
        cell ``(i, j)`` is centred on pixel ``(16 i + 7.5, 16 j + 7.5)``.
        With ``sizes`` (as :meth:`segment`) image ``i``'s first
        ``ceil(sizes[i] / 16)`` cells are the image's alone, the rest 0."""
        return self._output(self._trunk(x, 1, sizes)[2])

    def head(self, conv5_3, sizes=None):
        """Multi-label logits ``(N, n_class - 1)`` from ``relu(conv5_3)``
        (``sizes``: the global average pooling takes each image's cells)."""
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
        """Multi-label logits ``(N, n_class - 1)``, background excluded."""
        return self.head(self.features(x, sizes), sizes)

    def predict(self, x):
        """Segmentation ``(N, H, W)`` and logits ``(N, K)`` of ``x`` ``(N,
        3, H, W)`` as numpy arrays (test mode, no graph)."""
        with chainer.using_config('train', False), chainer.no_backprop_mode():
            seg = self.segment(x).array.argmax(axis=1)
            logits = self.classify(x).array
        to_cpu = chainer.backend.CpuDevice().send
        return to_cpu(seg), to_cpu(logits)

    def head_links(self):
        """The classification head's links (frozen by GAIN)."""
        return [getattr(self, n) for n in CLASSIFICATION_HEAD]

    def trunk_links(self):
        """Every link but the head's (frozen while it is trained)."""
        return [l for l in self.children() if l.name not in
                CLASSIFICATION_HEAD]


def _crop(h, offset, size):
    return h[:, :, offset:offset + size[0], offset:offset + size[1]]
