"""segment.py: label PNGs, overlays and CAMs of a folder of images; bad
input is one line and nothing is written outside --out."""
import os

import chainer
import numpy as np
import PIL.Image
import pytest

from datasets import preprocess
from datasets.voc import voc_palette
from helpers import error_line, read_tree, run_script, run_script_output
from models import FCN8s, grad_cam, normalize_cam
from models.io import save_model


@pytest.fixture
def folder(tmp_path):
    """Two images of other sizes, a text file; a thin model (5 classes)
    whose segmentation and scores are not constant."""
    images = tmp_path / 'mine'
    images.mkdir()
    rng = np.random.RandomState(0)
    for name, size in (('a.jpg', (40, 56)), ('b.png', (33, 47))):
        PIL.Image.fromarray(rng.randint(0, 256, size + (3,)).astype(
            np.uint8)).save(str(images / name))
    (images / 'notes.txt').write_text('not an image')
    np.random.seed(0)
    model = FCN8s(5, width=1 / 16.)
    for name, p in model.namedparams():
        if 'score' in name or name.endswith('/b'):
            p.array[...] = rng.normal(0, 0.3, p.shape)
    model.head_trained_by = ['a test fixture']
    path = str(tmp_path / 'model.npz')
    save_model(path, model)
    return str(images), path, model


def test_labels_are_the_models_argmax_and_cams_its_grad_cams(
        folder, tmp_path, monkeypatch, capsys):
    images, path, model = folder
    out = str(tmp_path / 'seg')
    before = read_tree(str(tmp_path))
    code, stdout, err = run_script_output('segment', [
        '--modelfile', path, '--images', images, '--out', out, '--cams',
        '--top', 5], monkeypatch, capsys)
    assert code == 0, err
    assert {k: v for k, v in read_tree(str(tmp_path)).items()
            if not k.startswith('seg' + os.sep)} == before
    assert 'skipping what is not a jpg or png file (1): notes.txt' in err
    for name in ('a.jpg', 'b.png'):
        stem = name[:-4]
        with PIL.Image.open(os.path.join(images, name)) as im:
            img = np.asarray(im.convert('RGB'))
        x = preprocess(img)[None]
        with chainer.using_config('train', False), \
                chainer.no_backprop_mode():
            scores = model.segment(x).array[0]
            logits = model.classify(x).array[0]
        with PIL.Image.open(os.path.join(out, 'labels', stem + '.png')) as png:
            assert png.mode == 'P' and png.getpalette()[:768] == voc_palette()
            label = np.asarray(png)
        assert len(np.unique(label)) > 1
        np.testing.assert_array_equal(label, scores.argmax(axis=0))
        with PIL.Image.open(os.path.join(out, 'overlays', stem + '.png')) as o:
            assert o.mode == 'RGB' and o.size == img.shape[1::-1]
        # the classes above 50 %, at least the top one; their Grad-CAMs
        classes = np.flatnonzero(logits > 0) + 1
        classes = classes if len(classes) else [np.argmax(logits) + 1]
        with np.load(os.path.join(out, 'cams', stem + '.npz')) as z:
            assert z['classes'].tolist() == list(classes)
            np.testing.assert_allclose(
                z['scores'], 1 / (1 + np.exp(-logits[classes - 1])),
                rtol=1e-5)
            for cam, c in zip(z['cams'], classes):
                with chainer.using_config('train', False):
                    ref = normalize_cam(grad_cam(model, x, np.array(
                        [c - 1]))).array[0]
                np.testing.assert_allclose(cam, ref, atol=1e-5)
                assert os.path.isfile(os.path.join(
                    out, 'cams', '%s_class%d.png' % (stem, c)))
    assert 'segmented 2 of 2 images' in stdout


@pytest.mark.parametrize('how,named', [
    ('no-folder', '--images'), ('no-images', 'no jpg or png files'),
    ('bad-model', 'model'), ('unreadable', 'none of its 1 jpg/png files'),
    ('out-in-images', '--out')])
def test_bad_input_is_one_line_and_nothing_is_written_outside_out(
        folder, tmp_path, monkeypatch, capsys, how, named):
    images, path, _ = folder
    out = str(tmp_path / 'seg')
    if how == 'no-folder':
        images = str(tmp_path / 'missing')
    elif how == 'no-images':
        images = str(tmp_path / 'empty')
        os.mkdir(images)
    elif how == 'bad-model':
        path = os.path.join(images, 'notes.txt')
    elif how == 'unreadable':
        images = str(tmp_path / 'broken')
        os.mkdir(images)
        with open(os.path.join(images, 'c.jpg'), 'wb') as f:
            f.write(b'not a jpeg')
    elif how == 'out-in-images':
        out = os.path.join(images, 'seg')
    before = read_tree(str(tmp_path))
    code, err = run_script('segment', ['--modelfile', path, '--images',
                                       images, '--out', out], monkeypatch,
                           capsys)
    assert code == 2 and named in error_line(err)
    assert read_tree(str(tmp_path)) == before
