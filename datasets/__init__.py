"""Datasets: VOC-format readers (segmentation, classification or both
joined), image lists and the embedded ``shapes`` dataset.

Every example is ``(img, label_map, labels)`` (shapes and types:
:class:`datasets.voc.ImageDataset`).
"""
import chainer_compat  # NOQA: before chainer (Python 3.12)
import itertools
import os

import numpy as np
from chainer.datasets import TransformDataset

from datasets.classification import (MAIN_LIST, ImageList,  # NOQA
                                     VOCClassification)
from datasets.transforms import (MEAN_BGR, PixelSupervisionFlag,  # NOQA
                                 SegmentationTransform, deprocess,
                                 pad_examples, preprocess,
                                 preprocess_batch)
from datasets.voc import (MAX_IMAGE_PIXELS, VOC_CLASS_NAMES,  # NOQA
                          DatasetError, VOCSegmentation, image_labels,
                          is_list_file, segmentation_list)
from runtime.files import read_text

DATASETS = ('shapes', 'voc', 'list')
#: How a VOC-format split is read (``--voc-layout``).
VOC_LAYOUTS = ('auto', 'segmentation', 'classification', 'joined')
#: The split that evaluate.py and visualize.py take by default.
TEST_SPLIT = {'shapes': 'test', 'voc': 'seg11valid', 'list': 'test'}
DEFAULT_VOC_DIR = os.path.expanduser('~/data/datasets/VOC/VOCdevkit/VOC2012')
CLASS_NAMES_FILE = 'class_names.txt'


def add_flags(parser):
    """``--dataset``, ``--data-dir``, ``--voc-layout`` and
    ``--max-image-pixels``."""
    parser.add_argument('--dataset', default='shapes', choices=DATASETS,
                        help='shapes: the embedded synthetic dataset; voc: '
                        'a VOC-format directory; list: a folder of images '
                        'and a --split list of their classes (README)')
    parser.add_argument('--data-dir', default=None,
                        help='dataset root (default: the shapes cache, '
                        '~/data/datasets/VOC/VOCdevkit/VOC2012 or the '
                        'folder of the --split list)')
    parser.add_argument('--voc-layout', default='auto', choices=VOC_LAYOUTS,
                        help='how a VOC-format split is read (docs/GAIN.md); '
                        'auto: joined where both the Segmentation and the '
                        'Main list exist, else the one that does')
    parser.add_argument('--max-image-pixels', type=int,
                        default=MAX_IMAGE_PIXELS,
                        help='largest image read, width x height, checked '
                        'from its header (default: %d = 4096x4096)'
                        % MAX_IMAGE_PIXELS)


def read_class_names(data_dir):
    """The names of ``data_dir/class_names.txt`` (one a line, background
    first, as make_pseudo_labels.py writes them), or None without it."""
    path = os.path.join(data_dir, CLASS_NAMES_FILE)
    if not os.path.lexists(path):
        return None
    text = read_text(path, 'list', error=DatasetError)
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) < 2:
        raise DatasetError('%s: needs background and at least one class, '
                           'one name a line' % path)
    repeated = [n for k, n in enumerate(names) if n in names[:k]]
    if repeated:
        raise DatasetError('%s: class %r is named twice' % (path,
                                                            repeated[0][:40]))
    return names


def get_dataset(name, data_dir=None, split='train', class_names=None,
                layout='auto', max_pixels=MAX_IMAGE_PIXELS,
                skip_missing=False):
    """The raw ``(img, label_map, labels)`` dataset of a split (the flags
    of :func:`add_flags`, ``--split`` and ``--skip-bad``); ``class_names``:
    the classes it must have (a val split takes its training split's), by
    default those of ``data_dir/class_names.txt``, else VOC's (``voc``);
    ``skip_missing``: drop the images without files (or a readable
    annotation) with a warning, listing them in ``missing``."""
    data_dir, names = _root_and_classes(name, data_dir, split, class_names)
    if not os.path.isdir(data_dir):
        raise DatasetError('%s: data directory %s' % (data_dir, 'is a file'
                           if os.path.exists(data_dir) else 'does not exist'))
    layout = 'list' if name == 'list' else voc_layout(data_dir, split, layout)
    if layout == 'segmentation':
        dataset = VOCSegmentation(data_dir, split, names,
                                  skip_missing=skip_missing)
    elif layout == 'list':
        dataset = ImageList(data_dir, split, names, skip_missing)
    else:
        dataset = VOCClassification(data_dir, split, names,
                                    layout == 'joined', skip_missing)
    dataset.max_pixels = max_pixels
    return dataset


def _root_and_classes(name, data_dir, split, class_names):
    if name == 'shapes':
        from datasets import shapes
        data_dir = data_dir or shapes.ensure()
        names = shapes.CLASS_NAMES
    elif name == 'voc':
        data_dir = data_dir or DEFAULT_VOC_DIR
        names = read_class_names(data_dir) or class_names or VOC_CLASS_NAMES
    elif name == 'list':
        if data_dir is None and not is_list_file(split):
            raise DatasetError('--dataset list needs --data-dir (the folder '
                               'its image paths are relative to) or a '
                               '--split list file, got %r' % split)
        data_dir = data_dir or os.path.dirname(split) or '.'
        names = read_class_names(data_dir) or class_names
        if names is None:
            raise DatasetError('%s: no %s (the class names, one a line, '
                               'background first)'
                               % (data_dir, CLASS_NAMES_FILE))
    else:
        raise DatasetError('--dataset must be one of %s, got %r'
                           % (', '.join(DATASETS), name))
    if class_names is not None and tuple(class_names) != tuple(names):
        raise DatasetError('%s: classes %s differ from the training '
                           'data\'s %s' % (data_dir, ', '.join(names),
                                           ', '.join(class_names)))
    return data_dir, names


def voc_layout(data_dir, split, layout='auto'):
    """The layout (:data:`VOC_LAYOUTS`) that reads ``split``: ``layout``
    itself unless ``'auto'``."""
    if layout not in VOC_LAYOUTS:
        raise DatasetError('--voc-layout must be one of %s, got %r'
                           % (', '.join(VOC_LAYOUTS), layout))
    if layout != 'auto':
        return layout
    main = os.path.join(data_dir, MAIN_LIST % split)
    if is_list_file(split) or not (os.path.isfile(main) and os.path.isdir(
            os.path.join(data_dir, 'Annotations'))):
        return 'segmentation'
    try:
        segmentation_list(data_dir, split)
    except DatasetError:
        return 'classification'
    return 'joined'


def masked_only(dataset, what='the split'):
    """``dataset`` restricted to its images with a mask; a DatasetError
    naming ``what`` when none has one."""
    has_mask = dataset.has_mask
    if has_mask.all():
        return dataset
    if not has_mask.any():
        raise DatasetError('%s %r of %s: none of its %d images has a mask'
                           % (what, dataset.split, dataset.data_dir,
                              len(dataset)))
    return dataset.subset(np.flatnonzero(has_mask))


def training_data(dataset, flip=False, augment=None):
    """``(x, label_map, labels)`` view of a raw dataset
    (:class:`SegmentationTransform`)."""
    return TransformDataset(dataset, SegmentationTransform(flip, augment))


def batches(dataset, batch_size):
    """Lists of at most ``batch_size`` consecutive examples whose images
    (the first entry) have one shape, so that they stack."""
    examples = (dataset[i] for i in range(len(dataset)))
    for _, same_shape in itertools.groupby(examples, lambda e: np.shape(e[0])):
        yield from iter(lambda: list(itertools.islice(same_shape,
                                                      batch_size)), [])
