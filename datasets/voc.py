"""Reader of the PASCAL VOC segmentation layout.

Accepted layouts under ``data_dir``:

* VOCdevkit / fcn: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png``
  (palette labels) and ``ImageSets/Segmentation/<split>.txt``;
* the augmented set: labels in ``SegmentationClassAug/`` and a
  ``train_aug.txt``-style split file (in ImageSets/Segmentation or at the
  top level);
* SBD's ``benchmark_RELEASE/dataset``: ``img/<id>.jpg``, ``cls/<id>.mat``
  and ``<split>.txt``.

``split`` may also be a path to a list file; ``seg11valid`` (the split of
the published FCN8s table) is taken from the fcn package if the directory
does not have it.
"""
import os

import chainer
import numpy as np
import PIL.Image

IGNORE = -1

VOC_CLASS_NAMES = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus',
    'car', 'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike',
    'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')


class DatasetError(ValueError):
    """A dataset that cannot be read; the message is one line naming it."""


def _seg11valid_file():
    import fcn
    return os.path.join(os.path.dirname(fcn.__file__), 'external',
                        'fcn.berkeleyvision.org', 'data', 'pascal',
                        'seg11valid.txt')


def _find_split_file(data_dir, split):
    if split.endswith('.txt') and os.path.isfile(split):
        return split
    candidates = [os.path.join(data_dir, 'ImageSets', 'Segmentation',
                               split + '.txt'),
                  os.path.join(data_dir, split + '.txt')]
    if split == 'seg11valid':
        candidates.append(_seg11valid_file())
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise DatasetError('%s: no split file for split %r (looked for %s)'
                       % (data_dir, split, ', '.join(candidates)))


def _find_layout(data_dir):
    """Returns ``(image_dir, label_dir, label_ext)``."""
    for labels in ('SegmentationClass', 'SegmentationClassAug'):
        if os.path.isdir(os.path.join(data_dir, labels)):
            return 'JPEGImages', labels, '.png'
    if os.path.isdir(os.path.join(data_dir, 'cls')):
        return 'img', 'cls', '.mat'
    raise DatasetError('%s: not a VOC-format directory (no '
                       'SegmentationClass/, SegmentationClassAug/ or cls/)'
                       % data_dir)


def read_label(path):
    """Label map ``(H, W)`` int32 with 255 turned into ``IGNORE`` (-1)."""
    if path.endswith('.mat'):
        import scipy.io
        mat = scipy.io.loadmat(path)
        lbl = mat['GTcls'][0]['Segmentation'][0].astype(np.int32)
    else:
        with PIL.Image.open(path) as im:
            if im.mode not in ('P', 'L'):
                raise DatasetError('%s: label PNG must be a palette or '
                                   'grayscale image, got mode %s'
                                   % (path, im.mode))
            lbl = np.asarray(im, dtype=np.int32)
    lbl = lbl.copy()
    lbl[lbl == 255] = IGNORE
    return lbl


def read_image(path):
    """RGB image ``(H, W, 3)`` uint8 (grayscale, RGBA, CMYK, palette are
    converted)."""
    with PIL.Image.open(path) as im:
        return np.asarray(im.convert('RGB'), dtype=np.uint8)


class VOCSegmentation(chainer.dataset.DatasetMixin):
    """VOC-format segmentation dataset.

    ``get_example(i)`` returns ``(img, lbl)``: ``img`` ``(H, W, 3)`` uint8
    RGB, ``lbl`` ``(H, W)`` int32 class indices with -1 for ignored pixels.

    Args:
        data_dir: dataset root (see the module docstring for layouts).
        split: split name or path to a list of ids.
        class_names: names, background first (default: VOC's 21).
    """

    def __init__(self, data_dir, split='train', class_names=VOC_CLASS_NAMES):
        if not os.path.isdir(data_dir):
            raise DatasetError('%s: data directory does not exist' % data_dir)
        self.data_dir = data_dir
        self.split = split
        self.class_names = tuple(class_names)
        image_dir, label_dir, ext = _find_layout(data_dir)
        split_file = _find_split_file(data_dir, split)
        with open(split_file) as f:
            ids = [line.split()[0] for line in f if line.strip()]
        if not ids:
            raise DatasetError('%s: split %r is empty' % (split_file, split))
        self.ids = ids
        self.image_files = [os.path.join(data_dir, image_dir, i + '.jpg')
                            for i in ids]
        self.label_files = [os.path.join(data_dir, label_dir, i + ext)
                            for i in ids]
        missing = [p for p in self.image_files + self.label_files
                   if not os.path.isfile(p)]
        if missing:
            raise DatasetError('%s: split %r names %d missing files, e.g. %s'
                               % (split_file, split, len(missing), missing[0]))

    @property
    def n_class(self):
        return len(self.class_names)

    def __len__(self):
        return len(self.ids)

    def get_example(self, i):
        img = read_image(self.image_files[i])
        lbl = read_label(self.label_files[i])
        if img.shape[:2] != lbl.shape:
            raise DatasetError('%s: image is %dx%d but its label is %dx%d'
                               % (self.image_files[i], img.shape[0],
                                  img.shape[1], lbl.shape[0], lbl.shape[1]))
        bad = (lbl >= self.n_class) | (lbl < IGNORE)
        if bad.any():
            raise DatasetError('%s: label values %s outside 0..%d and 255'
                               % (self.label_files[i],
                                  np.unique(lbl[bad]).tolist(),
                                  self.n_class - 1))
        return img, lbl


def image_labels(lbl, n_class):
    """Multi-hot ``(n_class - 1,)`` int32 of the foreground classes
    present in a label map (background and ignore excluded)."""
    present = np.unique(lbl)
    present = present[(present > 0) & (present < n_class)]
    labels = np.zeros(n_class - 1, dtype=np.int32)
    labels[present - 1] = 1
    return labels
