"""Datasets: the VOC-format reader and the embedded ``shapes`` dataset."""
import chainer_compat  # NOQA: before chainer (Python 3.12)
import os

from chainer.datasets import TransformDataset

from datasets.transforms import PixelSupervisionFlag, SegmentationTransform  # NOQA
from datasets.transforms import MEAN_BGR, deprocess, preprocess  # NOQA
from datasets.voc import (DatasetError, VOCSegmentation, VOC_CLASS_NAMES,  # NOQA
                          image_labels)

DATASETS = ('shapes', 'voc')
DEFAULT_VOC_DIR = os.path.expanduser('~/data/datasets/VOC/VOCdevkit/VOC2012')


def get_dataset(name, data_dir=None, split='train'):
    """The raw ``(img, lbl)`` dataset of a split.

    Args:
        name: ``'shapes'`` (generated on first use, cached under
            ``data/``; ``python -m datasets.shapes`` makes others) or ``'voc'`` (any VOC-format directory).
        data_dir: dataset root; default the shapes cache or
            ``~/data/datasets/VOC/VOCdevkit/VOC2012``.
        split: split name or list file.
    """
    if name == 'shapes':
        from datasets import shapes
        if data_dir is None:
            data_dir = shapes.ensure()
        return VOCSegmentation(data_dir, split, shapes.CLASS_NAMES)
    if name == 'voc':
        return VOCSegmentation(data_dir or DEFAULT_VOC_DIR, split,
                               VOC_CLASS_NAMES)
    raise DatasetError('--dataset must be one of %s, got %r'
                       % (', '.join(DATASETS), name))


def training_data(dataset, flip=False):
    """``(x, lbl, labels)`` view of a raw dataset (see
    :class:`SegmentationTransform`)."""
    return TransformDataset(dataset, SegmentationTransform(dataset.n_class,
                                                           flip))
