"""A folder of unlabelled images (``--images DIR``): its jpg and png files
and their class names, for the tools that take one."""
import os
import sys

from datasets.voc import VOC_CLASS_NAMES, DatasetError, read_image
from runtime.errors import UsageError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')


def list_images(folder):
    """``[(id, path)]`` of the jpg/png files of a folder, sorted; the
    other entries named in one warning."""
    if not os.path.isdir(folder):
        raise UsageError('--images %s: not a directory' % folder)
    names = sorted(os.listdir(folder))
    files = [f for f in names if f.lower().endswith(IMAGE_EXTENSIONS)]
    others = [f for f in names if f not in files]
    if others:
        print('warning: --images %s: skipping what is not a jpg or png '
              'file (%d): %s' % (folder, len(others), ', '.join(
                  others[:3]) + (', ...' if len(others) > 3 else '')),
              file=sys.stderr)
    if not files:
        raise UsageError('--images %s: no jpg or png files' % folder)
    stems = [os.path.splitext(f)[0] for f in files]
    return [(s if stems.count(s) == 1 else f.replace('.', '_'),
             os.path.join(folder, f)) for s, f in zip(stems, files)]


def read_images(files, max_pixels):
    """``(id, img, error)`` of each of ``files`` (``[(id, path)]``) in
    turn: ``img`` ``(H, W, 3)`` uint8 and ``error`` None, or for an
    unreadable file ``img`` None and the one-line reason."""
    for image_id, path in files:
        try:
            yield image_id, read_image(path, max_pixels), None
        except DatasetError as e:
            yield image_id, None, str(e)


def known_class_names(dataset_name, n_class):
    """Class names of a dataset kind without reading its files."""
    if dataset_name == 'shapes':
        from datasets.shapes import CLASS_NAMES as names
    else:
        names = VOC_CLASS_NAMES
    if len(names) != n_class:
        names = ['background'] + ['class%d' % c for c in range(1, n_class)]
    return tuple(names)
