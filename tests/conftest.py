"""Shared fixtures: tiny VOC-format directories and a thin model."""
import numpy as np
import pytest

from helpers import write_voc, write_weak_voc
from models import FCN8s
from runtime.model_files import save_model


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
    np.random.seed(0)
    model = FCN8s(n_class=4, width=1 / 16.)
    rng = np.random.RandomState(1)
    for name, p in model.namedparams():
        if 'score' in name or name.endswith('/b'):
            p.array[...] = rng.normal(0, 0.1, p.shape)
    return model


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A tiny VOC dir (``voc``: train 4, val 2, 32x40) and a model file
    (``model``: 21 classes, width 1/16, a head marked as trained)."""
    base = tmp_path_factory.mktemp('files')
    voc = str(base / 'VOC')
    write_voc(voc, {'train': 4, 'val': 2}, size=(32, 40))
    np.random.seed(0)
    model, classifier = str(base / 'model.npz'), FCN8s(21, 1 / 16.)
    classifier.head_trained_by = ['a test fixture']
    save_model(model, classifier)
    return dict(voc=voc, model=model)
