"""Image-level datasets: images with their classes, masks on some of them.

* :class:`VOCClassification`: VOC's classification layout, the ids of
  ``ImageSets/Main/<split>.txt`` (VOC's plain list of the split; its
  per-class ``<class>_<split>.txt`` lists, 1/-1/0 per image, say nothing
  the XML files do not, and are not read) with their labels from
  ``Annotations/<id>.xml`` (:mod:`datasets.annotations`) and their images
  in ``JPEGImages/<id>.jpg``. Joined with the segmentation list of the
  split (``masks=True``; VOC's Main and Segmentation lists of ``train``),
  the images it lists keep their masks; every image is one example.
* :class:`ImageList`: any folder of images with a list of their classes,
  in one of two formats (the class names come from the folder's
  ``class_names.txt``, background first, as make_pseudo_labels.py writes
  it).

  A plain list (any file name not ending in ``.csv``; UTF-8, a byte order
  mark is ignored): one image a line, its path relative to the data
  directory, then its class names separated by spaces and/or commas; a
  line with a path only is a negative (no class). Blank lines and lines
  starting with ``#`` are skipped; paths cannot hold spaces there (use a
  CSV)::

      # image        classes
      dogs/001.jpg   dog
      street/7.png   person, car
      empty/3.jpg

  A CSV (``*.csv``): a header row naming an ``image`` and a ``labels``
  column (any order, other columns ignored) and, optionally, a ``mask``
  column: the path of the image's label PNG (class indices, 255 ignored),
  empty for an image without one; ``labels`` holds the class names
  separated by spaces or commas (quoted), empty for a negative::

      image,labels,mask
      dogs/001.jpg,dog,masks/001.png
      street/7.png,"person, car",
      empty/3.jpg,,

  Paths are relative names inside the data directory (subfolders allowed;
  an absolute path, a ``..`` or a NUL is refused), an image's id is its
  path without the extension, and two images with one id are refused.

Every example is ``(img, label_map, labels)``, as for
:class:`datasets.voc.VOCSegmentation`, except that ``labels`` (multi-hot
``(K,)`` int32) come from the XML or the list, not from the mask, and that
an image without a mask has a ``label_map`` of -1 (ignored) everywhere:
the segmentation loss and the pixel metrics pass over it. ``has_mask``
``(N,)`` bool says which images have one, without reading them.
"""
import copy
import csv
import os
import re
import sys

import chainer
import numpy as np

from datasets.annotations import read_annotation
from datasets.voc import (IGNORE, MAX_IMAGE_PIXELS, _find_layout,
                          _find_split_file, _read_split, _relative_name,
                          keep_existing, read_image, read_mask)
from tqdm import tqdm

from runtime.errors import DatasetError
from runtime.files import read_text

#: Annotation files parsed before a progress line is shown.
SHOW_PROGRESS = 2000


class ImageLevelDataset(chainer.dataset.DatasetMixin):
    """Images with multi-hot labels and optional masks.

    Args:
        data_dir, split: where the examples come from (for the record).
        class_names: names, background first.
        entries: ``[(id, image file, mask file or None, labels (K,))]``.
        missing: ids dropped for missing or bad files (``--skip-bad``).
    """
    #: The attributes holding one entry per example.
    per_example = ('ids', 'image_files', 'label_files', 'labels')
    #: The largest image read, width x height (``--max-image-pixels``).
    max_pixels = MAX_IMAGE_PIXELS

    def __init__(self, data_dir, split, class_names, entries, missing=()):
        self.data_dir, self.split = data_dir, split
        self.class_names = tuple(class_names)
        self.ids = [e[0] for e in entries]
        self.image_files = [e[1] for e in entries]
        self.label_files = [e[2] for e in entries]
        self.labels = np.array([e[3] for e in entries], np.int32).reshape(
            len(entries), self.n_class - 1)
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
        img = read_image(self.image_files[i], self.max_pixels)
        if self.label_files[i] is None:
            label_map = np.full(img.shape[:2], IGNORE, np.int32)
        else:
            label_map = read_mask(self.label_files[i], img,
                                  self.image_files[i], self.n_class,
                                  self.max_pixels)
        return img, label_map, self.labels[i].copy()

    def subset(self, indices):
        """The same dataset restricted to the examples ``indices``."""
        indices = [int(i) for i in indices]
        part = copy.copy(self)
        for name in self.per_example:
            value = getattr(self, name)
            setattr(part, name, value[indices] if isinstance(
                value, np.ndarray) else [value[i] for i in indices])
        return part


# -- VOC's classification layout ---------------------------------------------
def _counted(files, desc):
    """``files``, counted on a progress line when there are many."""
    if len(files) < SHOW_PROGRESS:
        yield from files
        return
    with tqdm(total=len(files), desc=desc, unit='file') as shown:
        for entry in files:
            yield entry
            shown.update()


def main_list(data_dir, split):
    """``ImageSets/Main/<split>.txt`` of ``data_dir``, or ``split`` when it
    is a list file."""
    if split.endswith('.txt') and os.path.isfile(split):
        return split
    return os.path.join(data_dir, 'ImageSets', 'Main', split + '.txt')


def has_classification_layout(data_dir, split):
    """Whether ``data_dir`` has the Main list of ``split`` and
    ``Annotations/``."""
    return (os.path.isfile(main_list(data_dir, split)) and
            os.path.isdir(os.path.join(data_dir, 'Annotations')))


class VOCClassification(ImageLevelDataset):
    """VOC's classification layout (see the module docstring).

    Args:
        data_dir: dataset root (``JPEGImages/``, ``Annotations/``,
            ``ImageSets/Main/``; with ``masks`` also
            ``ImageSets/Segmentation/`` and ``SegmentationClass/``).
        split: split name or path to a list of ids.
        class_names: names, background first.
        masks: join the segmentation list of ``split``: its images keep
            their masks (each of its ids must be in the Main list).
        skip_missing: drop the images without files or without a readable
            annotation with a warning (listed in ``missing``) instead of
            failing on them.

    Attributes:
        difficult_only: ``(N, K)`` bool, the (image, class) pairs whose
            every object is ``difficult``: present in ``labels`` (see
            :mod:`datasets.annotations`), left out of the class's AP by
            the VOC devkit.
    """
    per_example = ImageLevelDataset.per_example + ('difficult_only',)

    def __init__(self, data_dir, split, class_names, masks=False,
                 skip_missing=False):
        if not os.path.isdir(data_dir):
            raise DatasetError('%s: data directory does not exist'
                               % data_dir)
        list_file = main_list(data_dir, split)
        if not os.path.isfile(list_file):
            raise DatasetError('%s: no classification list for split %r'
                               % (list_file, split))
        files = _read_split(list_file, data_dir, 'JPEGImages',
                            'Annotations', '.xml')
        if not files:
            raise DatasetError('%s: split %r is empty' % (list_file, split))
        mask_of = self._masks(data_dir, split, files) if masks else {}
        files, missing = keep_existing(
            [f + (mask_of.get(f[0]),) for f in files], list_file, split,
            skip_missing)
        entries, difficult = [], []
        for image_id, image, xml, mask in _counted(files, 'annotations'):
            try:
                labels, hard = read_annotation(xml, class_names)
            except DatasetError as e:
                if not skip_missing:
                    raise
                print('warning: skipping %s' % e, file=sys.stderr)
                missing.append(image_id)
                continue
            entries.append((image_id, image, mask, labels))
            difficult.append(hard)
        if not entries:
            raise DatasetError('%s: no image of split %r has a readable '
                               'annotation' % (list_file, split))
        super().__init__(data_dir, split, class_names, entries, missing)
        self.difficult_only = np.array(difficult, bool).reshape(
            self.labels.shape)

    @staticmethod
    def _masks(data_dir, split, files):
        """``{id: mask file}`` of the segmentation list of ``split``."""
        seg_file = _find_split_file(data_dir, split)
        _, label_dir, ext = _find_layout(data_dir)
        masked = _read_split(seg_file, data_dir, 'JPEGImages', label_dir,
                             ext)
        known = set(f[0] for f in files)
        strays = [f[0] for f in masked if f[0] not in known]
        if strays:
            raise DatasetError('%s: %d of its ids are not in the '
                               'classification list of split %r, e.g. %s'
                               % (seg_file, len(strays), split, strays[0]))
        return {f[0]: f[2] for f in masked}


# -- a list of images and their classes ---------------------------------------
def find_list(data_dir, split):
    """The list file of ``split``: a path, or ``<data_dir>/<split>``,
    ``<split>.txt`` or ``<split>.csv``."""
    if os.path.isfile(split):
        return split
    candidates = [os.path.join(data_dir, split + ext)
                  for ext in ('', '.txt', '.csv')]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise DatasetError('%s: no image list for split %r (looked for %s)'
                       % (data_dir, split, ', '.join(candidates[1:])))


def _multi_hot(text, index, where):
    labels = np.zeros(len(index), np.int32)
    for name in re.split(r'[\s,]+', text.strip()):
        if not name:
            continue
        if name not in index:
            raise DatasetError('%s: class %r is not one of %s (leave the '
                               'classes empty for a negative image)'
                               % (where, name[:40], ', '.join(index)))
        labels[index[name]] = 1
    return labels


def _text_rows(lines):
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        words = line.split(None, 1)
        yield number, words[0], (words[1] if len(words) > 1 else ''), ''


def _csv_rows(lines, list_file):
    reader = csv.reader(lines)
    try:
        columns = [c.strip() for c in next(reader, ())]
        if 'image' not in columns or 'labels' not in columns:
            raise DatasetError('%s: a CSV image list needs a header row with '
                               'the columns image and labels (and optionally '
                               'mask), got %s' % (list_file,
                                                  ','.join(columns)[:80]))
        repeated = sorted(set(c for c in columns if columns.count(c) > 1))
        if repeated:
            raise DatasetError('%s: column %s repeats in the header row'
                               % (list_file, repeated[0][:40]))
        for row in reader:
            if not row:
                continue
            if len(row) > len(columns):
                raise DatasetError('%s line %d: more fields than the header'
                                   % (list_file, reader.line_num))
            row = dict(zip(columns, row))
            yield (reader.line_num, row.get('image', '').strip(),
                   row.get('labels', ''), row.get('mask', '').strip())
    except csv.Error as e:        # a field over csv.field_size_limit()...
        raise DatasetError('%s line %d: %s' % (list_file, reader.line_num,
                                               e))


class ImageList(ImageLevelDataset):
    """A folder of images with a list of their classes (see the module
    docstring for the two formats).

    Args:
        data_dir: the folder the paths are relative to.
        split: list file, or its name in ``data_dir`` (``.txt`` or
            ``.csv`` may be left out).
        class_names: names, background first.
        skip_missing: drop the images without files with a warning
            (listed in ``missing``) instead of failing on them.
    """

    def __init__(self, data_dir, split, class_names, skip_missing=False):
        if not os.path.isdir(data_dir):
            raise DatasetError('%s: data directory does not exist'
                               % data_dir)
        list_file = find_list(data_dir, split)
        lines = read_text(list_file, 'list',
                          error=DatasetError).splitlines()
        index = {name: k for k, name in enumerate(class_names[1:])}
        rows = (_csv_rows(lines, list_file)
                if list_file.lower().endswith('.csv') else _text_rows(lines))
        files, labels, seen = [], {}, {}
        for number, image, classes, mask in rows:
            where = '%s line %d' % (list_file, number)
            if not image:
                raise DatasetError('%s: no image path' % where)
            image = _relative_name(image, list_file, number)
            image_id = os.path.splitext(image)[0]
            if image_id in seen:
                raise DatasetError('%s: image id %r (its path without the '
                                   'extension) repeats line %d'
                                   % (where, image_id, seen[image_id]))
            seen[image_id] = number
            labels[image_id] = _multi_hot(classes, index, where)
            files.append((image_id, os.path.join(data_dir, image),
                          os.path.join(data_dir, _relative_name(
                              mask, list_file, number)) if mask else None))
        if not files:
            raise DatasetError('%s: split %r is empty' % (list_file, split))
        files, missing = keep_existing(files, list_file, split,
                                       skip_missing)
        super().__init__(data_dir, split, class_names,
                         [f + (labels[f[0]],) for f in files], missing)
