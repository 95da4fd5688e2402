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

The list format: one image per line. A line of two words of which the
first ends in ``.jpg`` names the image and label paths, as DeepLab's
``train_aug.txt`` does (``/JPEGImages/x.jpg /SegmentationClassAug/x.png``);
any other line, stripped of the white space around it, is the id (spaces
inside it belong to it: ``my image`` is ``JPEGImages/my image.jpg``).
Blank lines are skipped. Ids and paths are relative names inside the
dataset (subfolders allowed); an absolute one, a ``..`` component, a NUL
or an id listed twice is refused naming the list file and line.

Every problem with the files (a missing or unreadable image, a truncated
JPEG or PNG, labels outside the classes, image and label of different
sizes, an empty split, an image larger than ``max_pixels`` by its header,
a FIFO or device under an image's name...) is a :class:`DatasetError`
whose one-line message names the file.
"""
import os
import sys

import chainer
import numpy as np
import PIL.Image

from runtime.errors import DatasetError, one_line
from runtime.files import open_input, read_text

IGNORE = -1

#: The largest image (width x height) read by default: 16.8 million pixels
#: (4096 x 4096), 90 times a VOC image (500 x 375). Images are checked
#: from their header, before anything is decoded (``--max-image-pixels``).
MAX_IMAGE_PIXELS = 4096 * 4096
# Pillow's own check warns from 89 million pixels and refuses from 179
# million; this reader checks the size itself, against its own limit.
PIL.Image.MAX_IMAGE_PIXELS = None

VOC_CLASS_NAMES = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus',
    'car', 'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike',
    'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')


def voc_palette():
    """Standard PASCAL VOC colour map (the devkit's VOClabelcolormap, from
    ``fcn.utils.label_colormap``): list of 768 ints (256 RGB)."""
    import fcn.utils  # imports scipy and skimage: only when drawing
    colours = fcn.utils.label_colormap(256) * 255
    return [int(v) for v in colours.round().astype(np.uint8).ravel()]


def _reason(e, path=None):
    """One line describing an exception raised while decoding ``path``
    (without repeating the path)."""
    text = one_line(e) if str(e).strip() else ''
    if path:
        text = text.replace(" '%s'" % path, '').replace(' %s' % path, '')
    return '%s: %s' % (type(e).__name__, text) if text else type(e).__name__


def _decode(path, what, read, max_pixels=MAX_IMAGE_PIXELS):
    """``read(PIL image)`` of the image file ``path``, once its header
    says it has at most ``max_pixels``; any failure to open or decode it
    is a DatasetError naming the file."""
    with open_input(path, 'image', error=DatasetError) as f:
        try:
            with PIL.Image.open(f) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise DatasetError(
                        '%s: %s of %dx%d pixels (width x height) is larger '
                        'than --max-image-pixels %d; downscale it or raise '
                        'that flag' % (path, what, width, height, max_pixels))
                return read(im)
        except DatasetError:
            raise
        except Exception as e:  # PIL raises OSError, SyntaxError, ...
            raise DatasetError('%s: not a readable %s (%s)'
                               % (path, what, _reason(e, path)))


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


LABEL_MODES = ('P', 'L', 'I', 'I;16', 'I;16L', 'I;16B')


def _read_mat_label(path):
    import scipy.io
    try:
        with open_input(path, 'image', error=DatasetError) as f:
            mat = scipy.io.loadmat(f)
        label_map = np.asarray(mat['GTcls'][0]['Segmentation'][0])
    except DatasetError:
        raise
    except Exception as e:
        raise DatasetError('%s: not a readable SBD label file (%s)'
                           % (path, _reason(e, path)))
    if label_map.ndim != 2 or label_map.dtype.kind not in 'iub':
        raise DatasetError('%s: label is not an integer map (%s %s)'
                           % (path, label_map.dtype, label_map.shape))
    return label_map.astype(np.int32)


def read_label(path, max_pixels=MAX_IMAGE_PIXELS):
    """Label map ``(H, W)`` int32 with 255 turned into ``IGNORE`` (-1).

    Palette or grayscale PNGs (8 or 16 bit) whose values are the class
    indices, at most ``max_pixels``, or SBD ``.mat`` files.
    """
    if path.endswith('.mat'):
        label_map = _read_mat_label(path)
    else:
        def read(im):
            if im.mode not in LABEL_MODES:
                raise DatasetError('%s: label PNG must be a palette or '
                                   'grayscale image, got mode %s'
                                   % (path, im.mode))
            return np.array(im, dtype=np.int32)
        label_map = _decode(path, 'label image', read, max_pixels)
    label_map = label_map.copy()
    label_map[label_map == 255] = IGNORE
    return label_map


def _to_rgb(im, path):
    """RGB uint8 array of any PIL mode. 16-bit grayscale is scaled by its
    bit depth (65535 -> 255), whatever the values in the file; 32-bit
    integer and float images, which have no fixed range, are refused."""
    if im.mode.startswith('I;16'):
        a = (np.asarray(im, dtype=np.float64) / 257.0).round()
        return np.repeat(a.astype(np.uint8)[:, :, None], 3, axis=2)
    if im.mode in ('I', 'F'):
        raise DatasetError('%s: image of mode %s (32-bit %s) has no fixed '
                           'range to scale to 8 bits; convert it to 8 or 16 '
                           'bits per channel'
                           % (path, im.mode, 'integers' if im.mode == 'I'
                              else 'floats'))
    return np.asarray(im.convert('RGB'), dtype=np.uint8)


def read_image(path, max_pixels=MAX_IMAGE_PIXELS):
    """RGB image ``(H, W, 3)`` uint8 (grayscale, RGBA, CMYK, palette,
    16-bit are converted).

    Raises:
        DatasetError: missing, unreadable, truncated or not a regular
            file, or larger than ``max_pixels`` (width x height, from its
            header), naming it.
    """
    img = _decode(path, 'image', lambda im: _to_rgb(im, path), max_pixels)
    if img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise DatasetError('%s: image has no pixels (%s)' % (path, img.shape))
    return img


def _relative_name(name, split_file, line):
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
                       'the dataset' % (split_file, line, name, problem))


def _read_split(split_file, data_dir, image_dir, label_dir, ext):
    """``[(id, image file, label file)]`` of a list file (see the module
    docstring); a UTF-8 byte order mark is ignored."""
    lines = read_text(split_file, 'list', error=DatasetError).split('\n')
    entries, seen = [], {}
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry:
            continue
        words = entry.split()
        if len(words) == 2 and words[0].lower().endswith('.jpg'):
            # DeepLab's train_aug.txt: image and label paths
            image, label = (_relative_name(w.lstrip('/'), split_file, number)
                            for w in words)
            parts = os.path.splitext(image)[0].split('/')
            image_id = '/'.join(parts[1:] if parts[0] == image_dir and
                                len(parts) > 1 else parts)
            files = os.path.join(data_dir, image), os.path.join(data_dir,
                                                                label)
        else:
            image_id = _relative_name(entry, split_file, number)
            files = (os.path.join(data_dir, image_dir, image_id + '.jpg'),
                     os.path.join(data_dir, label_dir, image_id + ext))
        if image_id in seen:
            raise DatasetError('%s line %d: %r is listed again (first on '
                               'line %d); each image may be listed once'
                               % (split_file, number, image_id,
                                  seen[image_id]))
        seen[image_id] = number
        entries.append((image_id,) + files)
    return entries


class VOCSegmentation(chainer.dataset.DatasetMixin):
    """VOC-format segmentation dataset.

    ``get_example(i)`` returns ``(img, label_map, labels)``: ``img``
    ``(H, W, 3)`` uint8 RGB, ``label_map`` ``(H, W)`` int32 class indices
    with -1 for ignored pixels and ``labels`` the multi-hot ``(K,)`` int32
    image labels of the foreground classes in ``label_map`` (``K =
    n_class - 1``), the example of every dataset here (see
    :mod:`datasets.classification` for images without a mask).

    Args:
        data_dir: dataset root (see the module docstring for layouts).
        split: split name or path to a list of ids.
        class_names: names, background first (default: VOC's 21).
        max_pixels: the largest image read (width x height).
        skip_missing: drop the split's entries without files with a
            warning (listed in ``missing``; ``--skip-bad``) instead of
            failing on them.
    """

    def __init__(self, data_dir, split='train', class_names=VOC_CLASS_NAMES,
                 max_pixels=MAX_IMAGE_PIXELS, skip_missing=False):
        if not os.path.exists(data_dir):
            raise DatasetError('%s: data directory does not exist' % data_dir)
        if not os.path.isdir(data_dir):
            raise DatasetError('%s: data directory is a file' % data_dir)
        self.data_dir = data_dir
        self.split = split
        self.class_names = tuple(class_names)
        self.max_pixels = max_pixels
        image_dir, label_dir, ext = _find_layout(data_dir)
        split_file = _find_split_file(data_dir, split)
        files = _read_split(split_file, data_dir, image_dir, label_dir, ext)
        if not files:
            raise DatasetError('%s: split %r is empty' % (split_file, split))
        files, self.missing = keep_existing(files, split_file, split,
                                            skip_missing)
        self.ids = [f[0] for f in files]
        self.image_files = [f[1] for f in files]
        self.label_files = [f[2] for f in files]

    @property
    def n_class(self):
        return len(self.class_names)

    def __len__(self):
        return len(self.ids)

    @property
    def has_mask(self):
        """``(N,)`` bool: every image of this layout has its mask."""
        return np.ones(len(self), bool)

    def get_example(self, i):
        img = read_image(self.image_files[i], self.max_pixels)
        label_map = read_mask(self.label_files[i], img, self.image_files[i],
                              self.n_class, self.max_pixels)
        return img, label_map, image_labels(label_map, self.n_class)


def read_mask(path, img, image_file, n_class, max_pixels=MAX_IMAGE_PIXELS):
    """:func:`read_label` of ``path``, checked against its image ``img``
    (of ``image_file``): same size, values in ``0..n_class - 1`` or
    ignored."""
    label_map = read_label(path, max_pixels)
    if img.shape[:2] != label_map.shape:
        raise DatasetError('%s: image is %dx%d but its label %s is %dx%d'
                           % (image_file, img.shape[0], img.shape[1], path,
                              label_map.shape[0], label_map.shape[1]))
    bad = (label_map >= n_class) | (label_map < IGNORE)
    if bad.any():
        raise DatasetError('%s: label values %s outside 0..%d and 255'
                           % (path, np.unique(label_map[bad]).tolist(),
                              n_class - 1))
    return label_map


def keep_existing(files, list_file, split, skip_missing=False):
    """The entries ``(id, path, ...)`` of ``list_file`` whose paths (None
    ones aside) are files, and the ids of the others: these are an error
    unless ``skip_missing``, where they are dropped with a warning (not all
    of them)."""
    missing = [f for f in files
               if not all(p is None or os.path.isfile(p) for p in f[1:])]
    if not missing:
        return files, []
    first = [p for p in missing[0][1:]
             if p is not None and not os.path.isfile(p)][0]
    if not skip_missing or len(missing) == len(files):
        raise DatasetError('%s: split %r names %d of %d images without '
                           'their files, e.g. %s' % (list_file, split,
                                                     len(missing),
                                                     len(files), first))
    print('warning: %s: skipping %d of %d images without their files, e.g. '
          '%s' % (list_file, len(missing), len(files), first),
          file=sys.stderr)
    dropped = set(f[0] for f in missing)
    return ([f for f in files if f[0] not in dropped],
            [f[0] for f in missing])


def image_labels(label_map, n_class):
    """Multi-hot ``(n_class - 1,)`` int32 of the foreground classes
    present in a label map (background and ignore excluded)."""
    present = np.unique(label_map)
    present = present[(present > 0) & (present < n_class)]
    labels = np.zeros(n_class - 1, dtype=np.int32)
    labels[present - 1] = 1
    return labels
