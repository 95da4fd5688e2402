"""Evaluation metrics, numpy only (and scipy's distance transform): the
FCN table, multi-label AP and attention quality, as functions and as
accumulators over a split, and their intervals over seeds and images."""
from metrics.attention import (AttentionMetrics, energy_inside,  # NOQA
                               gt_classes, pointing_hit, pseudo_label)
from metrics.classification import (ClassificationMetrics,  # NOQA
                                    average_precision,
                                    mean_average_precision)
from metrics.segmentation import (SegmentationMetrics,  # NOQA
                                  confusion_matrix, segmentation_scores)
