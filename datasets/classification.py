"""Image-level datasets: images with their classes, masks on some of them
(the formats: docs/GAIN.md, "Image-level labels and mixed supervision").

:class:`VOCClassification` reads VOC's ``ImageSets/Main/<split>.txt`` and
``Annotations/<id>.xml``, :class:`ImageList` any folder of images with a
plain or CSV list of their classes. Labels come from the XML or the list,
not from the mask; an image without a mask has a label map of -1
everywhere.
"""
import csv
import os
import re
import sys

from tqdm import tqdm

from datasets.annotations import read_annotation
from datasets.voc import (ImageDataset, find_layout, find_list,
                          keep_existing, listed_once, multi_hot, read_list,
                          relative_name, segmentation_list)
from runtime.errors import DatasetError
from runtime.files import read_text

#: Annotation files parsed before a progress bar is shown.
SHOW_PROGRESS = 2000
MAIN_LIST = 'ImageSets/Main/%s.txt'


class VOCClassification(ImageDataset):
    """VOC's classification layout (``JPEGImages/``, ``Annotations/``,
    ``ImageSets/Main/``), joined with the segmentation list of ``split``
    when ``masks`` (each of its ids must be in the Main list).
    ``skip_missing``: drop the images without files or a readable
    annotation with a warning instead of failing."""

    def __init__(self, data_dir, split, class_names, masks=False,
                 skip_missing=False):
        list_file = find_list(data_dir, split, [MAIN_LIST],
                              'classification list')
        files = read_list(list_file, data_dir, 'JPEGImages', 'Annotations',
                          '.xml')
        mask_of = _masks(data_dir, split, files) if masks else {}
        files, missing = keep_existing(
            [f + (mask_of.get(f[0]),) for f in files], list_file, split,
            skip_missing)
        entries, labels = [], []
        for image_id, image, xml, mask in tqdm(
                files, 'annotations', unit='file',
                disable=len(files) < SHOW_PROGRESS):
            try:
                labels.append(read_annotation(xml, class_names))
            except DatasetError as e:
                if not skip_missing:
                    raise
                print('warning: skipping %s' % e, file=sys.stderr)
                missing.append(image_id)
                continue
            entries.append((image_id, image, mask))
        if not entries:
            raise DatasetError('%s: no image of split %r has a readable '
                               'annotation' % (list_file, split))
        super().__init__(data_dir, split, class_names, entries, labels,
                         missing)


def _masks(data_dir, split, files):
    """``{id: mask file}`` of the segmentation list of ``split``."""
    seg_file = segmentation_list(data_dir, split)
    _, label_dir, ext = find_layout(data_dir)
    masked = read_list(seg_file, data_dir, 'JPEGImages', label_dir, ext)
    strays = sorted(set(f[0] for f in masked) - set(f[0] for f in files))
    if strays:
        raise DatasetError('%s: %d of its ids are not in the classification '
                           'list of split %r, e.g. %s'
                           % (seg_file, len(strays), split, strays[0]))
    return {f[0]: f[2] for f in masked}


# -- a list of images and their classes ---------------------------------------
def _text_rows(lines):
    for number, line in enumerate(lines, 1):
        if line.strip() and not line.lstrip().startswith('#'):
            words = line.split(None, 1) + ['']
            yield number, words[0], words[1], ''


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
        for row in filter(None, reader):
            if len(row) > len(columns):
                raise DatasetError('%s line %d: more fields than the header'
                                   % (list_file, reader.line_num))
            row = dict(zip(columns, row))
            yield (reader.line_num, row.get('image', '').strip(),
                   row.get('labels', ''), row.get('mask', '').strip())
    except csv.Error as e:        # a field over csv.field_size_limit()...
        raise DatasetError('%s line %d: %s' % (list_file, reader.line_num, e))


class ImageList(ImageDataset):
    """A folder of images with a list of their classes (module docstring):
    ``split`` is the list file, or its name in ``data_dir`` (``.txt`` or
    ``.csv`` may be left out)."""

    def __init__(self, data_dir, split, class_names, skip_missing=False):
        list_file = find_list(data_dir, split, ['%s', '%s.txt', '%s.csv'],
                              'image list')
        lines = read_text(list_file, 'list', error=DatasetError).splitlines()
        rows = (_csv_rows(lines, list_file) if list_file.lower().endswith(
            '.csv') else _text_rows(lines))
        files, labels, seen = [], {}, {}
        for number, image, classes, mask in rows:
            if not image:
                raise DatasetError('%s line %d: no image path'
                                   % (list_file, number))
            image_id = os.path.splitext(
                relative_name(image, list_file, number))[0]
            listed_once(seen, image_id, list_file, number)
            labels[image_id] = multi_hot(
                re.findall(r'[^\s,]+', classes), class_names,
                '%s line %d' % (list_file, number),
                hint='; leave the classes empty for a negative image')
            files.append((image_id, os.path.join(data_dir, image),
                          os.path.join(data_dir, relative_name(
                              mask, list_file, number)) if mask else None))
        files, missing = keep_existing(files, list_file, split, skip_missing)
        super().__init__(data_dir, split, class_names, files,
                         [labels[f[0]] for f in files], missing)
