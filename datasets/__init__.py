"""Datasets: the VOC-format readers (segmentation, classification or
both joined), image lists and the embedded ``shapes`` dataset.

Every dataset's example is ``(img, label_map, labels)``: the RGB image
``(H, W, 3)`` uint8, its label map ``(H, W)`` int32 (-1 ignored, and -1
everywhere for an image without a mask) and its multi-hot image labels
``(K,)`` int32 over the ``K = n_class - 1`` foreground classes; each
dataset has ``ids``, ``image_files``, ``class_names``, ``n_class``,
``data_dir`` and ``has_mask`` (``(N,)`` bool).
"""
import chainer_compat  # NOQA: before chainer (Python 3.12)
import os

import numpy as np
from chainer.datasets import TransformDataset

from datasets.convert import pad_examples  # NOQA
from datasets.transforms import PixelSupervisionFlag, SegmentationTransform  # NOQA
from datasets.transforms import (MEAN_BGR, deprocess, preprocess,  # NOQA
                                 preprocess_batch)
from datasets.voc import (MAX_IMAGE_PIXELS, DatasetError,  # NOQA
                          VOCSegmentation, VOC_CLASS_NAMES, _find_split_file,
                          image_labels)
from datasets.classification import (ImageList, VOCClassification,  # NOQA
                                     has_classification_layout)
from runtime.files import read_text

DATASETS = ('shapes', 'voc', 'list')
#: How a VOC-format split is read (``--voc-layout``).
VOC_LAYOUTS = ('auto', 'segmentation', 'classification', 'joined')
#: The split that evaluate.py and visualize.py take by default.
TEST_SPLIT = {'shapes': 'test', 'voc': 'seg11valid', 'list': 'test'}
DEFAULT_VOC_DIR = os.path.expanduser('~/data/datasets/VOC/VOCdevkit/VOC2012')


CLASS_NAMES_FILE = 'class_names.txt'


def add_flags(parser):
    """``--dataset``, ``--data-dir`` and ``--voc-layout`` of a script's
    parser."""
    parser.add_argument('--dataset', default='shapes', choices=DATASETS,
                        help='shapes: the embedded synthetic dataset; voc: '
                        'a VOC-format directory; list: a folder of images '
                        'and a list of their classes (--split: the list '
                        'file, .txt or .csv, see the README)')
    parser.add_argument('--data-dir', default=None,
                        help='dataset root (default: the generated shapes '
                        'cache, ~/data/datasets/VOC/VOCdevkit/VOC2012, or '
                        'for --dataset list the folder of the --split list '
                        'file)')
    parser.add_argument('--voc-layout', default='auto', choices=VOC_LAYOUTS,
                        help='how a VOC-format split is read: segmentation: '
                        'ImageSets/Segmentation/SPLIT.txt, labels from the '
                        'masks; classification: ImageSets/Main/SPLIT.txt, '
                        'labels from Annotations/ID.xml, no masks; joined: '
                        'the classification split, the images also in the '
                        'segmentation list keeping their masks; auto: '
                        'joined where both lists exist, else the one that '
                        'does (a list file path as --split: segmentation)')
    parser.add_argument('--max-image-pixels', type=int,
                        default=MAX_IMAGE_PIXELS,
                        help='largest image read, width x height; a larger '
                        'one is refused from its header, before decoding '
                        '(default: %d = 4096x4096)' % MAX_IMAGE_PIXELS)


def read_class_names(data_dir):
    """The class names of ``data_dir/class_names.txt`` (one per line,
    background first, as make_pseudo_labels.py writes them), or None
    without that file; a name given twice is refused."""
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
    """The raw ``(img, label_map, labels)`` dataset of a split.

    Args:
        name: ``'shapes'`` (generated on first use, cached under
            ``data/``; ``python -m datasets.shapes`` makes others),
            ``'voc'`` (any VOC-format directory) or ``'list'`` (a list of
            images and their classes, :class:`ImageList`).
        data_dir: dataset root; default the shapes cache,
            ``~/data/datasets/VOC/VOCdevkit/VOC2012`` or the folder of a
            list file.
        split: split name or list file.
        class_names: the classes the split must have (a val split takes
            its training split's); for ``voc`` and ``list`` by default
            those of ``data_dir/class_names.txt``, else VOC's 21 (``voc``).
        layout: one of :data:`VOC_LAYOUTS`, for ``shapes`` and ``voc``.
        max_pixels: the largest image read (``--max-image-pixels``).
        skip_missing: drop the split's images without files (or, for
            VOC's classification layout, without a readable annotation)
            with a warning, listing them in the dataset's ``missing``
            (``--skip-bad``), instead of failing on them.
    """
    data_dir, names = _root_and_classes(name, data_dir, split, class_names)
    layout = 'list' if name == 'list' else voc_layout(data_dir, split,
                                                      layout)
    if layout == 'segmentation':
        return VOCSegmentation(data_dir, split, names, max_pixels,
                               skip_missing)
    dataset = (ImageList(data_dir, split, names, skip_missing)
               if layout == 'list' else
               VOCClassification(data_dir, split, names,
                                 masks=layout == 'joined',
                                 skip_missing=skip_missing))
    dataset.max_pixels = max_pixels
    return dataset


def _root_and_classes(name, data_dir, split, class_names):
    """``(data_dir, class names)`` of :func:`get_dataset`'s arguments."""
    if name == 'shapes':
        from datasets import shapes
        if data_dir is None:
            data_dir = shapes.ensure()
        names = shapes.CLASS_NAMES
    elif name == 'voc':
        data_dir = data_dir or DEFAULT_VOC_DIR
        names = (read_class_names(data_dir) or class_names or
                 VOC_CLASS_NAMES)
    elif name == 'list':
        if data_dir is None:
            if not os.path.isfile(split):
                raise DatasetError('--dataset list needs --data-dir (the '
                                   'folder its image paths are relative '
                                   'to) or a --split list file, got %r'
                                   % split)
            data_dir = os.path.dirname(split) or '.'
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
    is_list_file = split.endswith('.txt') and os.path.isfile(split)
    if is_list_file or not has_classification_layout(data_dir, split):
        return 'segmentation'
    try:
        _find_split_file(data_dir, split)
    except DatasetError:
        return 'classification'
    return 'joined'


def masked_only(dataset, what='the split'):
    """``dataset`` restricted to its images with a mask (itself when all
    have one); a :class:`DatasetError` naming ``what`` when none has
    one."""
    has_mask = np.asarray(dataset.has_mask)
    if has_mask.all():
        return dataset
    if not has_mask.any():
        raise DatasetError('%s %r of %s: none of its %d images has a mask'
                           % (what, dataset.split, dataset.data_dir,
                              len(dataset)))
    return dataset.subset(np.flatnonzero(has_mask))


def training_data(dataset, flip=False, augment=None):
    """``(x, label_map, labels)`` view of a raw dataset (see
    :class:`SegmentationTransform`; ``augment``: one of
    :mod:`datasets.augment`)."""
    return TransformDataset(dataset, SegmentationTransform(flip, augment))


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
