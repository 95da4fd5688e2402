"""Shared fixtures: tiny VOC-format directories, model files and a thin
model."""
import os

# Strict float32 in cuDNN/cuBLAS on Ampere and newer (no TF32), so that the
# GPU tests (marked gpu) compare float32 with float32. Must precede CUDA's
# start, hence before any test module imports chainer.
os.environ.setdefault('NVIDIA_TF32_OVERRIDE', '0')

import numpy as np  # NOQA: E402
import pytest  # NOQA: E402

from helpers import (N_VOC, thin_fcn8s, write_voc,  # NOQA: E402
                     write_weak_voc)
from models import FCN8s  # NOQA: E402
from models.fcn8s import CLASSIFICATION_HEAD  # NOQA: E402
from models.io import save_model  # NOQA: E402


@pytest.fixture
def voc_dir(tmp_path):
    root = str(tmp_path / 'VOC')
    write_voc(root, {'train': 6, 'val': 3})
    return root


@pytest.fixture
def weak_voc(tmp_path):
    """A VOC directory in both layouts: ``train`` has 3 images with a mask
    and 4 without, ``val`` 2 and 2 (see ``helpers.write_weak_voc``);
    returns ``(root, {id: (img, lbl or None, labels)})``."""
    root = str(tmp_path / 'VOC')
    written = write_weak_voc(root, {'train': 3, 'val': 2},
                             {'train': 4, 'val': 2})
    return root, written


@pytest.fixture
def thin_model():
    """A thin FCN8s (n_class 4) with random, non-zero score layers."""
    return thin_fcn8s()


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A tiny VOC dir (``voc``: train 4, val 2, 32x40), a model file
    (``model``, also ``good``: 21 classes, width 1/16, a head marked as
    trained) and bad model files: ``untrained`` (its head at its random
    start), ``nohead`` (fcn's format), ``nan`` (a NaN bias), ``vgg``
    (another network), ``n5`` (5 classes), ``truncated``, ``npy`` (a single
    array), ``missing`` and ``dir`` (a directory)."""
    base = tmp_path_factory.mktemp('files')
    voc = str(base / 'VOC')
    write_voc(voc, {'train': 4, 'val': 2}, size=(32, 40))
    np.random.seed(0)
    model = FCN8s(N_VOC, 1 / 16.)
    paths = dict(voc=voc, model=str(base / 'model.npz'),
                 untrained=str(base / 'untrained.npz'))
    save_model(paths['untrained'], model)     # a head at its random start
    model.head_trained_by = ['a test fixture']
    save_model(paths['model'], model)
    paths['good'] = paths['model']
    arrays = dict(np.load(paths['good']))
    fcn_style = {k: v for k, v in arrays.items()
                 if k.split('/')[0] not in CLASSIFICATION_HEAD + ('_meta',)}
    for name, content in [('nohead', fcn_style),
                          ('nan', dict(arrays, **{'fc7/b': arrays['fc7/b'] *
                                                  np.nan})),
                          ('vgg', {'conv1/W': np.zeros((4, 3, 3, 3))})]:
        paths[name] = str(base / (name + '.npz'))
        with open(paths[name], 'wb') as f:
            np.savez(f, **content)
    paths['n5'] = str(base / 'n5.npz')
    save_model(paths['n5'], FCN8s(5, 1 / 16.))
    data = open(paths['good'], 'rb').read()
    paths['truncated'] = str(base / 'truncated.npz')
    open(paths['truncated'], 'wb').write(data[:len(data) // 2])
    paths['npy'] = str(base / 'array.npz')
    with open(paths['npy'], 'wb') as f:
        np.save(f, np.zeros(3))
    paths['missing'] = str(base / 'missing.npz')
    paths['dir'] = str(base)
    return paths


@pytest.fixture(scope='module')
def pipeline(tmp_path_factory):
    """The stages' inputs: a tiny VOC dir (``voc``: train 6, val 2, 40x48),
    an FCN8s (21 classes, width 1/16) in fcn's format (``fcn``: no GAIN
    head, no metadata) and as a project model file (``project``)."""
    base = tmp_path_factory.mktemp('pipeline')
    voc = str(base / 'VOC')
    write_voc(voc, {'train': 6, 'val': 2}, size=(40, 48))
    np.random.seed(0)
    model = FCN8s(N_VOC, 1 / 16.)
    # a file in fcn's format: no GAIN head, no metadata
    fcn_file = str(base / 'fcn8s.npz')
    with open(fcn_file, 'wb') as f:
        np.savez(f, **{n.lstrip('/'): p.array for n, p in model.namedparams()
                       if n.split('/')[1] not in CLASSIFICATION_HEAD})
    project_file = str(base / 'project.npz')
    save_model(project_file, model)
    return dict(voc=voc, fcn=fcn_file, project=project_file)


@pytest.fixture
def figures(monkeypatch):
    """``{title: (panels, figure)}`` of every log figure drawn."""
    import visualizations
    drawn = {}
    real = visualizations.log_figure

    def log_figure(log, panels, title):
        drawn[title] = (panels, real(log, panels, title))
        return drawn[title][1]
    monkeypatch.setattr(visualizations, 'log_figure', log_figure)
    return drawn


@pytest.fixture
def modelfile(tmp_path):
    """A model file: 21 classes, width 1/16, a head marked as trained."""
    np.random.seed(0)
    model = FCN8s(21, 1 / 16.)
    model.head_trained_by = ['a test fixture']
    path = str(tmp_path / 'start.npz')
    save_model(path, model)
    return path


@pytest.fixture(scope='module')
def voc(tmp_path_factory):
    """A tiny VOC dir: train 4, val 2, 32x32."""
    root = str(tmp_path_factory.mktemp('schedules') / 'VOC')
    write_voc(root, {'train': 4, 'val': 2}, size=(32, 32))
    return root
