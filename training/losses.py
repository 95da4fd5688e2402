"""Loss chains of the segmentation and classifier stages.

Each takes a batch ``(x, lbl, labels)`` (see
``datasets.SegmentationTransform``) and reports its terms.
"""
import chainer
import chainer.functions as F


class SegmentationLoss(chainer.Chain):
    """Pixel-wise softmax cross-entropy of ``model.segment``, ignoring -1."""

    def __init__(self, model):
        super().__init__()
        with self.init_scope():
            self.model = model

    def forward(self, x, lbl, labels):
        loss = F.softmax_cross_entropy(self.model.segment(x), lbl)
        chainer.report({'loss': loss}, self)
        return loss


class ClassificationLoss(chainer.Chain):
    """Multi-label sigmoid cross-entropy of ``model.classify``.

    With ``frozen_trunk`` the trunk runs without building a graph (it gets
    no gradient anyway), so the step costs one forward plus a head update.
    """

    def __init__(self, model, frozen_trunk=True):
        super().__init__()
        self.frozen_trunk = frozen_trunk
        with self.init_scope():
            self.model = model

    def forward(self, x, lbl, labels):
        with chainer.using_config('enable_backprop',
                                  chainer.config.enable_backprop and
                                  not self.frozen_trunk):
            features = self.model.features(x)
        logits = self.model.head(features)
        loss = F.sigmoid_cross_entropy(logits, labels)
        accuracy = F.binary_accuracy(logits, labels)
        chainer.report({'loss': loss, 'accuracy': accuracy}, self)
        return loss
