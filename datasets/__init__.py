"""Datasets: the VOC-format reader and the embedded ``shapes`` dataset."""
import chainer_compat  # NOQA: before chainer (Python 3.12)
import os

import numpy as np
from chainer.datasets import TransformDataset

from datasets.transforms import PixelSupervisionFlag, SegmentationTransform  # NOQA
from datasets.transforms import (MEAN_BGR, deprocess, preprocess,  # NOQA
                                 preprocess_batch)
from datasets.voc import (DatasetError, VOCSegmentation, VOC_CLASS_NAMES,  # NOQA
                          image_labels)
from datasets.voc import MAX_IMAGE_PIXELS

DATASETS = ('shapes', 'voc')
#: The split that evaluate.py and visualize.py take by default.
TEST_SPLIT = {'shapes': 'test', 'voc': 'seg11valid'}
DEFAULT_VOC_DIR = os.path.expanduser('~/data/datasets/VOC/VOCdevkit/VOC2012')


CLASS_NAMES_FILE = 'class_names.txt'


def add_flags(parser):
    """``--dataset`` and ``--data-dir`` of a script's parser."""
    parser.add_argument('--dataset', default='shapes', choices=DATASETS,
                        help='embedded synthetic dataset or a VOC-format '
                        'directory')
    parser.add_argument('--data-dir', default=None,
                        help='dataset root (default: the generated shapes '
                        'cache, or ~/data/datasets/VOC/VOCdevkit/VOC2012)')
    parser.add_argument('--max-image-pixels', type=int,
                        default=MAX_IMAGE_PIXELS,
                        help='largest image read, width x height; a larger '
                        'one is refused from its header, before decoding '
                        '(default: %d = 4096x4096)' % MAX_IMAGE_PIXELS)


def read_class_names(data_dir):
    """The class names of ``data_dir/class_names.txt`` (one per line,
    background first, as make_pseudo_labels.py writes them), or None
    without that file."""
    path = os.path.join(data_dir, CLASS_NAMES_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            names = tuple(line.strip() for line in f if line.strip())
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError('%s: unreadable (%s)' % (path, e))
    if len(names) < 2:
        raise DatasetError('%s: needs background and at least one class, '
                           'one name a line' % path)
    return names


def get_dataset(name, data_dir=None, split='train', class_names=None,
                max_pixels=MAX_IMAGE_PIXELS):
    """The raw ``(img, label_map)`` dataset of a split.

    Args:
        name: ``'shapes'`` (generated on first use, cached under
            ``data/``; ``python -m datasets.shapes`` makes others) or
            ``'voc'`` (any VOC-format directory).
        data_dir: dataset root; default the shapes cache or
            ``~/data/datasets/VOC/VOCdevkit/VOC2012``.
        split: split name or list file.
        class_names: the classes the split must have (a val split takes
            its training split's); for ``voc`` by default those of
            ``data_dir/class_names.txt``, else VOC's 21.
        max_pixels: the largest image read (``--max-image-pixels``).
    """
    if name == 'shapes':
        from datasets import shapes
        if data_dir is None:
            data_dir = shapes.ensure()
        names = shapes.CLASS_NAMES
    elif name == 'voc':
        data_dir = data_dir or DEFAULT_VOC_DIR
        names = (read_class_names(data_dir) or class_names or
                 VOC_CLASS_NAMES)
    else:
        raise DatasetError('--dataset must be one of %s, got %r'
                           % (', '.join(DATASETS), name))
    if class_names is not None and tuple(class_names) != tuple(names):
        raise DatasetError('%s: classes %s differ from the training '
                           'data\'s %s' % (data_dir, ', '.join(names),
                                            ', '.join(class_names)))
    return VOCSegmentation(data_dir, split, names, max_pixels)


def training_data(dataset, flip=False):
    """``(x, label_map, labels)`` view of a raw dataset (see
    :class:`SegmentationTransform`)."""
    return TransformDataset(dataset, SegmentationTransform(dataset.n_class,
                                                           flip))


def batches(dataset, batch_size):
    """Lists of at most ``batch_size`` consecutive examples of ``dataset``
    whose images (the first entry) have one shape, so that they stack."""
    batch = []
    for i in range(len(dataset)):
        example = dataset[i]
        if batch and (len(batch) == batch_size or
                      np.shape(batch[0][0]) != np.shape(example[0])):
            yield batch
            batch = []
        batch.append(example)
    if batch:
        yield batch
