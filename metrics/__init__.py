"""Evaluation metrics: the FCN table, multi-label AP and attention quality."""
from metrics.classification import average_precision, mean_average_precision  # NOQA
from metrics.segmentation import confusion_matrix, segmentation_scores  # NOQA
