"""Model files: a chainer npz of the weights plus ``_meta/n_class``,
``_meta/width`` (later stages need no flags), ``_meta/head_trained_by``
(the stages that trained the head; empty: its random start) and any
further ``_meta/<key>`` as JSON (e.g. ``best`` of ``model_best.npz``). A
plain ``fcn.models.FCN8s`` npz also loads: its architecture is read off
the weight shapes, its GAIN head starts fresh."""
import json
import os

import chainer
import numpy as np

from models.fcn8s import CLASSIFICATION_HEAD, FCN8s
from runtime.errors import ModelFileError, one_line
from runtime.files import atomic_write, read_npz

META = '_meta/'
_HEAD = tuple('%s/%s' % (l, p) for l in CLASSIFICATION_HEAD
              for p in ('W', 'b'))


def save_model(path, model, **meta):
    """Write ``model`` to ``path`` atomically (its directory made if
    missing), each keyword as ``_meta/<key>``."""
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
    """``(FCN8s, has_head)`` of a model file; ModelFileError (one line
    naming the file) unless it has ``n_class`` and ``width`` (None: any)
    and, with ``require_head``, a head some stage trained.
    ``head_trained_by`` is None for an older file without the record."""
    arrays = _read_npz(path)
    file_n_class, file_width = _architecture(path, arrays)
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
    has_head = all(k in arrays for k in _HEAD)
    if require_head and not has_head:
        raise ModelFileError('%s: has no GAIN classification head; train it '
                             'with train_classifier.py first' % path)
    record = _record(path, arrays, 'head_trained_by') if has_head else []
    if record is not None and not (isinstance(record, list) and all(
            isinstance(r, str) for r in record)):
        raise ModelFileError('%s: unreadable %shead_trained_by (not a list '
                             'of stage names)' % (path, META))
    model.head_trained_by = record
    if require_head and model.head_trained_by == []:
        raise ModelFileError('%s: its classification head was never trained '
                             '(it holds its random start); train it with '
                             'train_classifier.py first' % path)
    _fill(path, model, arrays, has_head)
    return model, has_head


def _architecture(path, arrays):
    """``(n_class, width)`` of the file's record, or of its weights."""
    if META + 'n_class' in arrays:
        try:
            return (int(_record(path, arrays, 'n_class')),
                    float(_record(path, arrays, 'width')))
        except (TypeError, ValueError) as e:
            raise ModelFileError('%s: unreadable architecture record %s (%s)'
                                 % (path, META, one_line(e)))
    if 'score_fr/W' not in arrays or 'conv1_1/W' not in arrays:
        raise ModelFileError('%s: not an FCN8s model file (no score_fr/W '
                             'or conv1_1/W)' % path)
    return (int(arrays['score_fr/W'].shape[0]),
            arrays['conv1_1/W'].shape[0] / 64.0)


def _fill(path, model, arrays, has_head):
    """Copy the file's weights into ``model``, each checked."""
    for name, param in model.namedparams():
        key = name.lstrip('/')
        if key in _HEAD and not has_head:
            continue
        if key not in arrays:
            raise ModelFileError('%s: missing parameter %s' % (path, key))
        value = arrays[key]
        if value.shape != param.array.shape:
            raise ModelFileError('%s: %s has shape %s, FCN8s(n_class=%d, '
                                 'width=%g) expects %s'
                                 % (path, key, value.shape, model.n_class,
                                    model.width, param.array.shape))
        if value.dtype.kind not in 'fiub':
            raise ModelFileError('%s: %s is not numeric (%s)'
                                 % (path, key, value.dtype))
        if not np.isfinite(value).all():
            raise ModelFileError('%s: %s holds NaN or inf values'
                                 % (path, key))
        param.array[...] = value


def read_meta(path):
    """``{key: value}`` of a model file's ``_meta/`` records (JSON
    decoded); ModelFileError as :func:`load_model`."""
    arrays = _read_npz(path)
    return {k[len(META):]: _record(path, arrays, k[len(META):])
            for k in arrays if k.startswith(META)}


def _record(path, arrays, key):
    """The record ``_meta/<key>`` (None without one)."""
    value = arrays.get(META + key)
    if value is None:
        return None
    try:
        return (json.loads(str(value)) if value.dtype.kind == 'U'
                else value.item())
    except ValueError as e:
        raise ModelFileError('%s: unreadable %s%s (%s)'
                             % (path, META, key, one_line(e)))


def _read_npz(path):
    return read_npz(path, 'model', ModelFileError, 'a model file')
