"""VOC-format files (images, label maps, split lists) and the dataset every
reader builds from them.

The layouts: docs/GAIN.md, "VOC-format segmentation data"; a list names
one image a line (docs/OPERATIONS.md): its id, or DeepLab's two paths of
image and label.

Every problem with a file (missing, not a regular file, truncated, larger
than ``max_pixels`` by its header, labels outside the classes, image and
label of different sizes...) is a one-line :class:`DatasetError` naming it.
"""
import contextlib
import copy
import os
import sys

import chainer
import numpy as np
import PIL.Image

from runtime.errors import DatasetError, one_line
from runtime.files import open_input, read_text

IGNORE = -1
#: The largest image read by default, width x height (4096 x 4096, 90 VOC
#: images), checked from its header before decoding (--max-image-pixels).
MAX_IMAGE_PIXELS = 4096 * 4096
PIL.Image.MAX_IMAGE_PIXELS = None      # checked here, against the flag
VOC_CLASS_NAMES = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus',
    'car', 'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike',
    'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')
LABEL_MODES = ('P', 'L', 'I', 'I;16', 'I;16L', 'I;16B')


def voc_palette():
    """The devkit's VOC colour map (``fcn.utils.label_colormap``): a list
    of 768 ints (256 RGB)."""
    import fcn.utils  # imports scipy and skimage: only when drawing
    colours = fcn.utils.label_colormap(256) * 255
    return [int(v) for v in colours.round().astype(np.uint8).ravel()]


@contextlib.contextmanager
def _reading(path, what):
    """Any failure inside but a DatasetError becomes one naming ``path``."""
    try:
        yield
    except DatasetError:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, ...
        text = one_line(e) if str(e).strip() else ''
        raise DatasetError('%s: not a readable %s (%s)' % (
            path, what, '%s: %s' % (type(e).__name__, text) if text
            else type(e).__name__))


def _decode(path, what, read, max_pixels):
    """``read(PIL image)`` of ``path`` once its header shows at most
    ``max_pixels``; any failure is a DatasetError naming the file."""
    with open_input(path, 'image', error=DatasetError) as f, \
            _reading(path, what), PIL.Image.open(f) as im:
        if im.width * im.height > max_pixels:
            raise DatasetError(
                '%s: %s of %dx%d pixels (width x height) is larger than '
                '--max-image-pixels %d; downscale it or raise that flag'
                % (path, what, im.width, im.height, max_pixels))
        return read(im)


def _read_mat(path):
    """The label map of an SBD ``.mat`` file."""
    import scipy.io
    with _reading(path, 'SBD label file'), \
            open_input(path, 'image', error=DatasetError) as f:
        label_map = np.asarray(
            scipy.io.loadmat(f)['GTcls'][0]['Segmentation'][0])
    if label_map.ndim != 2 or label_map.dtype.kind not in 'iub':
        raise DatasetError('%s: label is not an integer map (%s %s)'
                           % (path, label_map.dtype, label_map.shape))
    return label_map.astype(np.int32)


def read_label(path, max_pixels=MAX_IMAGE_PIXELS):
    """Label map ``(H, W)`` int32 of a palette or grayscale PNG (8 or 16
    bit) of class indices, or of an SBD ``.mat``; 255 becomes -1."""
    def read(im):
        if im.mode not in LABEL_MODES:
            raise DatasetError('%s: label PNG must be a palette or grayscale '
                               'image, got mode %s' % (path, im.mode))
        return np.array(im, dtype=np.int32)
    label_map = (_read_mat(path) if path.endswith('.mat') else
                 _decode(path, 'label image', read, max_pixels))
    label_map[label_map == 255] = IGNORE
    return label_map


def _to_rgb(im, path):
    """RGB uint8 of any PIL mode. 16-bit grayscale is scaled by its bit
    depth (65535 -> 255) whatever its values; 32-bit integer and float
    images have no fixed range and are refused."""
    if im.mode.startswith('I;16'):
        a = (np.asarray(im, dtype=np.float64) / 257.0).round()
        return np.repeat(a.astype(np.uint8)[:, :, None], 3, axis=2)
    if im.mode in ('I', 'F'):
        raise DatasetError(
            '%s: image of mode %s (32-bit %s) has no fixed range to scale to '
            '8 bits; convert it to 8 or 16 bits per channel' % (
                path, im.mode, 'integers' if im.mode == 'I' else 'floats'))
    return np.asarray(im.convert('RGB'), dtype=np.uint8)


def read_image(path, max_pixels=MAX_IMAGE_PIXELS):
    """RGB image ``(H, W, 3)`` uint8 of any mode (grayscale, RGBA, CMYK,
    palette, 16-bit)."""
    img = _decode(path, 'image', lambda im: _to_rgb(im, path), max_pixels)
    if img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise DatasetError('%s: image has no pixels (%s)' % (path, img.shape))
    return img


def image_labels(label_map, n_class):
    """Multi-hot ``(n_class - 1,)`` int32 of the foreground classes of a
    label map."""
    present = np.unique(label_map)
    labels = np.zeros(n_class - 1, dtype=np.int32)
    labels[present[(present > 0) & (present < n_class)] - 1] = 1
    return labels


def multi_hot(names, class_names, where, what='class', hint=''):
    """Multi-hot ``(K,)`` int32 of the class ``names`` over the ``K =
    len(class_names) - 1`` foreground classes (background first); a name
    outside them is a DatasetError naming ``where``."""
    labels = np.zeros(len(class_names) - 1, np.int32)
    for name in names:
        if name not in class_names[1:]:
            raise DatasetError('%s: %s %r is not one of the %d classes (%s)%s'
                               % (where, what, name[:40], len(labels),
                                  ', '.join(class_names[1:]), hint))
        labels[class_names.index(name) - 1] = 1
    return labels


# -- lists -------------------------------------------------------------------
def is_list_file(split):
    """Whether ``--split`` names a list file (``.txt`` or ``.csv``)."""
    return split.endswith(('.txt', '.csv')) and os.path.isfile(split)


def find_list(data_dir, split, patterns, what):
    """``split`` if it is a list file, else the first existing file of
    ``data_dir/pattern % split``."""
    if is_list_file(split):
        return split
    candidates = [os.path.join(data_dir, p % split) for p in patterns]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise DatasetError('%s: no %s for split %r (looked for %s)'
                       % (data_dir, what, split, ', '.join(candidates)))


def segmentation_list(data_dir, split):
    patterns = ['ImageSets/Segmentation/%s.txt', '%s.txt']
    if split == 'seg11valid':
        import fcn
        patterns.append(os.path.join(
            os.path.dirname(fcn.__file__), 'external',
            'fcn.berkeleyvision.org', 'data', 'pascal', '%s.txt'))
    return find_list(data_dir, split, patterns, 'split file')


def find_layout(data_dir):
    """``(image dir, label dir, label extension)`` of a segmentation
    layout."""
    for labels in ('SegmentationClass', 'SegmentationClassAug'):
        if os.path.isdir(os.path.join(data_dir, labels)):
            return 'JPEGImages', labels, '.png'
    if os.path.isdir(os.path.join(data_dir, 'cls')):
        return 'img', 'cls', '.mat'
    raise DatasetError('%s: not a VOC-format directory (no '
                       'SegmentationClass/, SegmentationClassAug/ or cls/)'
                       % data_dir)


def relative_name(name, list_file, line):
    """``name`` if it is a relative name inside the dataset."""
    if '\0' in name:
        problem = 'holds a NUL character'
    elif name.startswith('/') or os.path.isabs(name):
        problem = 'is an absolute path'
    elif '..' in name.split('/'):
        problem = "has a '..' component"
    else:
        return name
    raise DatasetError('%s line %d: %r %s; ids are relative names inside '
                       'the dataset' % (list_file, line, name, problem))


def listed_once(seen, image_id, list_file, line):
    """Record ``image_id`` on ``line`` in ``seen``, refusing a repeat."""
    if image_id in seen:
        raise DatasetError('%s line %d: %r is listed again (first on line '
                           '%d); each image may be listed once'
                           % (list_file, line, image_id, seen[image_id]))
    seen[image_id] = line


def read_list(list_file, data_dir, image_dir, label_dir, ext):
    """``[(id, image file, label file)]`` of a VOC list: a line of two
    words, the first ending in ``.jpg``, names the image and label paths;
    any other line, stripped, is the id (``my image``:
    ``JPEGImages/my image.jpg``)."""
    entries, seen = [], {}
    lines = read_text(list_file, 'list', error=DatasetError).split('\n')
    for number, line in enumerate(lines, 1):
        words = line.split()
        if len(words) == 2 and words[0].lower().endswith('.jpg'):
            image, label = (relative_name(w.lstrip('/'), list_file, number)
                            for w in words)
            parts = os.path.splitext(image)[0].split('/')
            image_id = '/'.join(parts[1:] if parts[0] == image_dir and
                                len(parts) > 1 else parts)
            files = (os.path.join(data_dir, image),
                     os.path.join(data_dir, label))
        elif words:
            image_id = relative_name(line.strip(), list_file, number)
            files = (os.path.join(data_dir, image_dir, image_id + '.jpg'),
                     os.path.join(data_dir, label_dir, image_id + ext))
        else:
            continue
        listed_once(seen, image_id, list_file, number)
        entries.append((image_id,) + files)
    return entries


def keep_existing(entries, list_file, split, skip_missing=False):
    """The entries ``(id, path, ...)`` whose paths (None aside) are files,
    and the ids of the others: an error unless ``skip_missing`` (then a
    warning), as is an empty list."""
    if not entries:
        raise DatasetError('%s: split %r is empty' % (list_file, split))
    absent = [[p for p in e[1:] if p is not None and not os.path.isfile(p)]
              for e in entries]
    missing = [e[0] for e, a in zip(entries, absent) if a]
    if not missing:
        return entries, []
    what = '%d of %d images without their files, e.g. %s' % (
        len(missing), len(entries), next(a[0] for a in absent if a))
    if not skip_missing or len(missing) == len(entries):
        raise DatasetError('%s: split %r names %s' % (list_file, split, what))
    print('warning: %s: skipping %s' % (list_file, what), file=sys.stderr)
    return [e for e, a in zip(entries, absent) if not a], missing


# -- datasets ----------------------------------------------------------------
class ImageDataset(chainer.dataset.DatasetMixin):
    """Images ``entries`` ``[(id, image file, mask file or None)]`` with
    multi-hot ``labels`` ``(N, K)`` (None: the masks' classes);
    ``missing``: the ids dropped for missing or bad files (``--skip-bad``).

    ``get_example(i)`` is ``(img, label_map, labels)``: RGB ``(H, W, 3)``
    uint8, ``(H, W)`` int32 (-1 ignored, and everywhere for an image
    without a mask) and ``(K,)`` int32 over the ``K = n_class - 1``
    foreground classes."""
    #: The largest image read, width x height (``--max-image-pixels``).
    max_pixels = MAX_IMAGE_PIXELS

    def __init__(self, data_dir, split, class_names, entries, labels=None,
                 missing=()):
        self.data_dir, self.split = data_dir, split
        self.class_names = tuple(class_names)
        self.ids = [e[0] for e in entries]
        self.image_files = [e[1] for e in entries]
        self.label_files = [e[2] for e in entries]
        self.labels = None if labels is None else np.array(
            labels, np.int32).reshape(len(entries), self.n_class - 1)
        self.missing = list(missing)

    @property
    def n_class(self):
        return len(self.class_names)

    @property
    def has_mask(self):
        """``(N,)`` bool: which images have a mask."""
        return np.array([f is not None for f in self.label_files], bool)

    def __len__(self):
        return len(self.ids)

    def get_example(self, i):
        image, mask = self.image_files[i], self.label_files[i]
        img = read_image(image, self.max_pixels)
        if mask is None:
            label_map = np.full(img.shape[:2], IGNORE, np.int32)
        else:
            label_map = read_label(mask, self.max_pixels)
            if img.shape[:2] != label_map.shape:
                raise DatasetError('%s: image is %dx%d but its label %s is '
                                   '%dx%d' % ((image,) + img.shape[:2] + (
                                       mask,) + label_map.shape))
            bad = (label_map >= self.n_class) | (label_map < IGNORE)
            if bad.any():
                values = np.unique(label_map[bad]).tolist()
                raise DatasetError('%s: label values %s outside 0..%d and '
                                   '255' % (mask, values, self.n_class - 1))
        labels = (image_labels(label_map, self.n_class) if self.labels is
                  None else self.labels[i].copy())
        return img, label_map, labels

    def subset(self, indices):
        """The same dataset restricted to the examples ``indices``."""
        indices = [int(i) for i in indices]
        part = copy.copy(self)
        for name in ('ids', 'image_files', 'label_files'):
            setattr(part, name, [getattr(self, name)[i] for i in indices])
        if self.labels is not None:
            part.labels = self.labels[indices]
        return part


class VOCSegmentation(ImageDataset):
    """The segmentation layout (module docstring): every image with its
    mask, its labels the mask's classes."""

    def __init__(self, data_dir, split='train', class_names=VOC_CLASS_NAMES,
                 max_pixels=MAX_IMAGE_PIXELS, skip_missing=False):
        image_dir, label_dir, ext = find_layout(data_dir)
        list_file = segmentation_list(data_dir, split)
        entries, missing = keep_existing(
            read_list(list_file, data_dir, image_dir, label_dir, ext),
            list_file, split, skip_missing)
        super().__init__(data_dir, split, class_names, entries,
                         missing=missing)
        self.max_pixels = max_pixels
