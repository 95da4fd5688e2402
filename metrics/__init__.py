"""Evaluation metrics: the FCN table, multi-label AP and attention quality."""
import chainer_compat  # NOQA: before chainer (Python 3.12)
from metrics.classification import average_precision, mean_average_precision  # NOQA
from metrics.segmentation import confusion_matrix, segmentation_scores  # NOQA
from metrics.attention import (AttentionMetrics, attention_segmentation,  # NOQA
                               class_cams, energy_inside, gt_classes,
                               pointing_hit, pseudo_label)
