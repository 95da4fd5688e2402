"""Evaluation metrics, numpy only: the FCN table, multi-label AP,
attention quality and cue reliance, and their bootstrap intervals."""
from metrics.attention import (AttentionMetrics, energy_inside,  # NOQA
                               gt_classes, pointing_hit, pseudo_label)
from metrics.classification import (ClassificationMetrics,  # NOQA
                                    average_precision,
                                    mean_average_precision)
from metrics.segmentation import (SegmentationMetrics,  # NOQA
                                  confusion_matrix, segmentation_scores)
