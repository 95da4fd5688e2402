"""Loss chains of the segmentation and classifier stages: each takes a
batch ``(x, label_map, labels)`` and, padded, each image's ``sizes``
``(N, 2)`` (:mod:`models.padding`), and reports its terms."""
import chainer
import chainer.functions as F


class SegmentationLoss(chainer.Chain):
    """Softmax cross-entropy of ``model.segment`` (ignoring -1), plus
    ``cls_weight`` times the multi-label loss of ``model.classify`` (a
    trunk from scratch, the stand-in for ImageNet pre-training)."""

    def __init__(self, model, cls_weight=0.0):
        super().__init__()
        self.cls_weight = cls_weight
        with self.init_scope():
            self.model = model

    def forward(self, x, label_map, labels, sizes=None):
        return self.from_scores(self.model.segment(x, sizes), x, label_map,
                                labels, sizes)

    def from_scores(self, score, x, label_map, labels, sizes=None):
        """The loss given the scores ``(N, n_class, H, W)`` of
        ``model.segment(x, sizes)``, for a caller that reads them too."""
        seg = F.softmax_cross_entropy(score, label_map)
        loss = seg
        if self.cls_weight:
            cl = F.sigmoid_cross_entropy(self.model.classify(x, sizes), labels)
            loss = seg + self.cls_weight * cl
            chainer.report({'seg': seg, 'cl': cl}, self)
        chainer.report({'loss': loss}, self)
        return loss


class ClassificationLoss(chainer.Chain):
    """Multi-label sigmoid cross-entropy of ``model.classify``
    (``accuracy``: percent of the (image, class) pairs right); with
    ``frozen_trunk`` the trunk builds no graph (it gets no gradient)."""

    def __init__(self, model, frozen_trunk=True):
        super().__init__()
        self.frozen_trunk = frozen_trunk
        with self.init_scope():
            self.model = model

    def forward(self, x, label_map, labels, sizes=None):
        with chainer.using_config('enable_backprop',
                                  chainer.config.enable_backprop and
                                  not self.frozen_trunk):
            features = self.model.features(x, sizes)
        logits = self.model.head(features, sizes)
        loss = F.sigmoid_cross_entropy(logits, labels)
        accuracy = F.binary_accuracy(logits, labels)
        chainer.report({'loss': loss, 'accuracy': 100 * accuracy}, self)
        return loss
