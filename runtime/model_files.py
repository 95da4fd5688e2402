"""Model files: save with their architecture, load with clear errors.

A file written here is a chainer npz plus ``_meta/n_class`` and
``_meta/width``, so later stages rebuild the model without flags, and
``_meta/head_trained_by``, a JSON list of the training stages that trained
the classification head (empty: the head holds its random start), and any
further record the writer adds (``_meta/<key>``, JSON; e.g. ``best`` of
``model_best.npz``, see :func:`read_meta`). A plain
``fcn.models.FCN8s`` npz (e.g. ``fcn8s_from_caffe.npz``) also loads: its
architecture is read off the weight shapes and the GAIN head starts fresh.
"""
import json
import os
import zipfile

import chainer
import numpy as np

from models.fcn8s import CLASSIFICATION_HEAD, FCN8s
from runtime.errors import ModelFileError, one_line
from runtime.files import atomic_write

META = '_meta/'
_NPZ_MAGIC = b'PK\x03\x04'
_NPY_MAGIC = b'\x93NUMPY'


def save_model(path, model, **meta):
    """Write ``model`` to ``path`` atomically (temp file, then rename);
    each keyword is recorded as ``_meta/<key>``, its value as JSON."""
    arrays = {name.lstrip('/'): chainer.backend.CpuDevice().send(p.array)
              for name, p in model.namedparams()}
    arrays[META + 'n_class'] = np.int64(model.n_class)
    arrays[META + 'width'] = np.float64(model.width)
    arrays[META + 'head_trained_by'] = np.array(
        json.dumps(model.head_trained_by))
    for key, value in meta.items():
        arrays[META + key] = np.array(json.dumps(value))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, 'wb') as f:
        np.savez(f, **arrays)


def load_model(path, n_class=None, width=None, require_head=False):
    """Build an :class:`FCN8s` from a model file.

    Args:
        path: an npz of this project or of ``fcn.models.FCN8s``.
        n_class, width: expected architecture, or None to take the file's.
        require_head: fail if the file has no GAIN head or records that
            no training stage trained it.
    Returns:
        ``(model, has_head)``; ``model.head_trained_by`` is the file's
        record (None for a file of this project that predates it).
    Raises:
        ModelFileError: one-line message naming the file.
    """
    arrays = _read_npz(path)
    if META + 'n_class' in arrays:
        try:
            file_n_class = int(arrays[META + 'n_class'])
            file_width = float(arrays[META + 'width'])
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFileError('%s: unreadable architecture record %s (%s)'
                                 % (path, META, one_line(e)))
    else:
        if 'score_fr/W' not in arrays or 'conv1_1/W' not in arrays:
            raise ModelFileError('%s: not an FCN8s model file (no score_fr/W '
                                 'or conv1_1/W)' % path)
        file_n_class = int(arrays['score_fr/W'].shape[0])
        file_width = arrays['conv1_1/W'].shape[0] / 64.0
    if n_class is not None and n_class != file_n_class:
        raise ModelFileError('%s: has n_class=%d, expected %d'
                             % (path, file_n_class, n_class))
    if width is not None and abs(width - file_width) > 1e-6:
        raise ModelFileError('%s: has width=%g, expected %g'
                             % (path, file_width, width))
    try:
        model = FCN8s(file_n_class, file_width)
    except ValueError as e:
        raise ModelFileError('%s: %s' % (path, e))

    head = tuple('%s/%s' % (l, p) for l in CLASSIFICATION_HEAD
                 for p in ('W', 'b'))
    has_head = all(k in arrays for k in head)
    if require_head and not has_head:
        raise ModelFileError('%s: has no GAIN classification head; train it '
                             'with train_classifier.py first' % path)
    model.head_trained_by = _head_record(path, arrays) if has_head else []
    if require_head and model.head_trained_by == []:
        raise ModelFileError('%s: its classification head was never trained '
                             '(it holds its random start); train it with '
                             'train_classifier.py first' % path)
    for name, param in model.namedparams():
        key = name.lstrip('/')
        if key not in arrays:
            if key in head:
                continue
            raise ModelFileError('%s: missing parameter %s' % (path, key))
        value = arrays[key]
        if value.shape != param.array.shape:
            raise ModelFileError('%s: %s has shape %s, FCN8s(n_class=%d, '
                                 'width=%g) expects %s'
                                 % (path, key, value.shape, file_n_class,
                                    file_width, param.array.shape))
        if key in head and not has_head:
            continue
        if value.dtype.kind not in 'fiub':
            raise ModelFileError('%s: %s is not numeric (%s)'
                                 % (path, key, value.dtype))
        if not np.isfinite(value).all():
            raise ModelFileError('%s: %s holds NaN or inf values'
                                 % (path, key))
        param.array[...] = value
    return model, has_head


def read_meta(path):
    """``{key: value}`` of the ``_meta/`` records of a model file of this
    project (JSON text decoded, numbers as Python numbers).

    Raises:
        ModelFileError: as :func:`load_model`, or an unreadable record.
    """
    meta = {}
    for name, value in _read_npz(path).items():
        if not name.startswith(META):
            continue
        key = name[len(META):]
        try:
            meta[key] = (json.loads(str(value)) if value.dtype.kind == 'U'
                         else value.item())
        except ValueError as e:
            raise ModelFileError('%s: unreadable %s (%s)'
                                 % (path, name, one_line(e)))
    return meta


def _head_record(path, arrays):
    key = META + 'head_trained_by'
    if key not in arrays:
        return None
    try:
        record = json.loads(str(arrays[key]))
        if not (isinstance(record, list) and
                all(isinstance(r, str) for r in record)):
            raise ValueError('not a list of stage names')
    except ValueError as e:
        raise ModelFileError('%s: unreadable %s (%s)'
                             % (path, key, one_line(e)))
    return record


def _is_npy(path):
    with open(path, 'rb') as f:
        return f.read(6) == b'\x93NUMPY'


def _read_npz(path):
    if os.path.isdir(path):
        raise ModelFileError('%s: is a directory, not a model file' % path)
    if not os.path.isfile(path):
        raise ModelFileError('%s: no such model file' % path)
    if not zipfile.is_zipfile(path) and not _is_npy(path):
        raise ModelFileError('%s: not a model file (not an npz archive)'
                             % path)
    try:
        with open(path, 'rb') as f:
            magic = f.read(6)
    except OSError as e:
        raise ModelFileError('%s: unreadable (%s)' % (path, e.strerror or e))
    if magic.startswith(_NPY_MAGIC):
        raise ModelFileError('%s: not a model file (a single array, not an '
                             'npz archive)' % path)
    if not magic.startswith(_NPZ_MAGIC):
        raise ModelFileError('%s: not a model file (%s)' % (
            path, 'empty' if not magic else 'not an npz archive'))
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ModelFileError('%s: not a readable npz model file (%s)'
                             % (path, one_line(e)))
    except Exception as e:  # zlib.error, struct.error... of a damaged file
        raise ModelFileError('%s: not a readable npz model file (%s: %s)'
                             % (path, type(e).__name__, one_line(e)))
