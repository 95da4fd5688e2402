"""Caffe VGG preprocessing, the training transform and the converter of
the training and validation batches."""
import chainer
import numpy as np
from chainer.dataset import concat_examples

from datasets.voc import IGNORE

#: The VGG16 (LSVRC2012) BGR mean that the caffe FCN8s weights expect.
MEAN_BGR = np.array([104.00698793, 116.66876762, 122.67891434],
                    dtype=np.float32)


def preprocess(img):
    """RGB ``(H, W, 3)`` uint8 -> BGR mean-subtracted ``(3, H, W)`` float32.
    A zero is the mean colour, what GAIN's erasure ``I - T * I`` turns an
    erased pixel into."""
    x = img[:, :, ::-1].astype(np.float32) - MEAN_BGR
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess_batch(imgs):
    """:func:`preprocess` of RGB images of one size: ``(N, 3, H, W)``."""
    return np.stack([preprocess(img) for img in imgs])


def deprocess(x):
    """Inverse of :func:`preprocess`: ``(3, H, W)`` -> RGB uint8."""
    img = np.asarray(x).transpose(1, 2, 0) + MEAN_BGR
    return np.clip(img[:, :, ::-1], 0, 255).round().astype(np.uint8)


class SegmentationTransform(object):
    """``(img, label_map, labels)`` -> ``(x, label_map, labels)``, ``x``
    :func:`preprocess`'ed. In train mode only (like dropout), with ``flip``
    a horizontal flip with probability 1/2, then ``augment`` (one of
    :mod:`datasets.augment`), both drawn from ``numpy.random``."""

    def __init__(self, flip=False, augment=None):
        self.flip, self.augment = flip, augment

    def __call__(self, example):
        img, label_map, labels = example
        if self.flip and chainer.config.train and np.random.rand() < 0.5:
            img, label_map = img[:, ::-1], label_map[:, ::-1]
        if self.augment is not None and chainer.config.train:
            img, label_map = self.augment(img, label_map)
        return (preprocess(img),
                np.ascontiguousarray(label_map, dtype=np.int32),
                np.asarray(labels, dtype=np.int32))


class PixelSupervisionFlag(chainer.dataset.DatasetMixin):
    """Appends to each example whether it is one of the few images
    (``indices``, chosen among those with a mask) that carry pixel
    supervision for L_ext (GAIN_ext)."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = frozenset(int(i) for i in indices)

    def __len__(self):
        return len(self.dataset)

    def get_example(self, i):
        return tuple(self.dataset[i]) + (i in self.indices,)


@chainer.dataset.converter()
def pad_examples(batch, device=None):
    """``concat_examples`` of ``(x, label_map, labels, ...)`` examples that
    may differ in size, plus their sizes: each image at the top left of the
    batch's largest height and width, the rest 0 (the mean colour) and
    label -1; the sizes, each image's ``(height, width)`` ``(N, 2)`` on the
    host (:mod:`models.padding`), None when all have one size."""
    sizes = np.array([np.shape(example[0])[-2:] for example in batch],
                     np.int64)
    if (sizes == sizes[0]).all():
        return concat_examples(batch, device) + (None,)
    padding = (0, IGNORE) + (0,) * (len(batch[0]) - 2)
    return concat_examples(batch, device, padding) + (sizes,)
