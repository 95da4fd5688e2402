"""Helpers of the tests: tiny VOC-format directories, running a script
in-process, reading its error line, and a toy link."""
import os

import chainer
import chainer.functions as F
import numpy as np
import PIL.Image

from datasets.voc import voc_palette
from models import FCN8s


def write_example(root, image_id, img, lbl):
    """``JPEGImages/<id>.jpg`` and the palette PNG
    ``SegmentationClass/<id>.png`` of one example under ``root``."""
    PIL.Image.fromarray(img).save(
        os.path.join(root, 'JPEGImages', image_id + '.jpg'), quality=95)
    png = PIL.Image.fromarray(lbl, mode='P')
    png.putpalette(voc_palette())
    png.save(os.path.join(root, 'SegmentationClass', image_id + '.png'))


def write_voc(root, splits, n_class=4, size=(40, 48), seed=0):
    """Write a VOC-format directory with random rectangles.

    ``splits`` maps a split name to its number of images. Returns
    ``{id: (img, lbl)}`` with ``lbl`` as written (255 = ignore).
    """
    rng = np.random.RandomState(seed)
    for d in ('JPEGImages', 'SegmentationClass',
              os.path.join('ImageSets', 'Segmentation')):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    written = {}
    for split, n in splits.items():
        ids = ['%s_%03d' % (split, i) for i in range(n)]
        for i in ids:
            h, w = size
            img = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
            lbl = np.zeros((h, w), dtype=np.uint8)
            for c in rng.choice(np.arange(1, n_class), rng.randint(1, 3),
                                replace=False):
                y, x = rng.randint(0, h - 8), rng.randint(0, w - 8)
                lbl[y:y + 8, x:x + 10] = c
            lbl[0, :] = 255
            write_example(root, i, img, lbl)
            written[i] = (img, lbl)
        with open(os.path.join(root, 'ImageSets', 'Segmentation',
                               split + '.txt'), 'w') as f:
            f.write('\n'.join(ids) + '\n')
    return written


def read_tree(root):
    """{relative path: bytes} of every file under root."""
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            with open(p, 'rb') as f:
                out[os.path.relpath(p, root)] = f.read()
    return out


def relative_error(actual, expected):
    """``|actual - expected| / |expected|`` in the Frobenius norm."""
    return (np.linalg.norm(actual - expected) /
            max(np.linalg.norm(expected), 1e-30))


def error_line(err):
    """The one ``error: ...`` line of a script's stderr."""
    lines = [l for l in err.splitlines() if l.startswith('error:')]
    assert len(lines) == 1, err
    return lines[0]


def float64_model(seed=3):
    """A thin FCN8s in float64 with non-zero score layers and biases."""
    np.random.seed(seed)
    model = FCN8s(n_class=4, width=1 / 16.)
    rng = np.random.RandomState(seed)
    for name, p in model.namedparams():
        if 'score' in name or name.endswith('/b'):
            p.array[...] = rng.normal(0, 0.1, p.shape)
        p.array = p.array.astype(np.float64)
    return model


def observe(loss, *data):
    """Run ``loss`` on ``data``; returns (value, {term: float}) of the terms
    it reports."""
    reporter = chainer.Reporter()
    reporter.add_observer('main', loss)
    observation = {}
    with reporter.scope(observation):
        value = loss(*data)
    return value, {k.split('/')[1]: float(v.array)
                   for k, v in observation.items()}


class Toy(chainer.Link):
    """A one-parameter link that reports its loss, for toy trainers."""

    def __init__(self):
        super().__init__()
        with self.init_scope():
            self.w = chainer.Parameter(np.ones(1, np.float32))

    def forward(self, x):
        loss = F.sum(self.w * x)
        chainer.report({'loss': loss}, self)
        return loss


def run_script(script, argv, monkeypatch, capsys):
    """``(exit status, stderr)`` of ``<script>.main`` run in-process under
    ``cli.run`` with ``argv``; no traceback may reach the output."""
    code, _, err = run_script_output(script, argv, monkeypatch, capsys)
    return code, err


def run_script_output(script, argv, monkeypatch, capsys):
    """``(exit status, stdout, stderr)`` of :func:`run_script`."""
    import importlib
    import sys
    from runtime import cli
    monkeypatch.setattr(sys, 'argv', [script + '.py'] + [str(a)
                                                         for a in argv])
    module = importlib.import_module(script)
    try:
        cli.run(module.main)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert 'Traceback' not in out + err
    return code, out, err


def write_annotation(path, objects, size=(40, 48)):
    """A VOC annotation file: ``objects`` is ``[(name, difficult)]``."""
    parts = ['<annotation><folder>VOC2012</folder><filename>%s.jpg'
             '</filename><size><width>%d</width><height>%d</height><depth>3'
             '</depth></size>' % (os.path.splitext(os.path.basename(path))[0],
                                  size[1], size[0])]
    for name, difficult in objects:
        parts.append('<object><name>%s</name><pose>Unspecified</pose>'
                     '<truncated>0</truncated><difficult>%d</difficult>'
                     '<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax>'
                     '<ymax>9</ymax></bndbox></object>' % (name, difficult))
    with open(path, 'w') as f:
        f.write(''.join(parts) + '</annotation>\n')


def write_weak_voc(root, masked, unmasked, n_class=4, size=(40, 48),
                   seed=0):
    """A VOC directory in both layouts, like VOC2012's: for each split,
    ``masked[split]`` images with a mask (``ImageSets/Segmentation``, ids
    ``<split>_NNN``) and ``unmasked[split]`` more without (ids
    ``<split>_img_NNN``), all of them in ``ImageSets/Main/<split>.txt``
    (plus ``trainval.txt``) with an ``Annotations/<id>.xml`` naming the
    classes of the mask, or random ones (none for every third image).

    Returns ``{id: (img, lbl or None, labels)}``, ``labels`` the multi-hot
    ``(20,)`` labels over VOC's classes.
    """
    from datasets.voc import VOC_CLASS_NAMES
    written = {i: (img, lbl, None) for i, (img, lbl) in
               write_voc(root, masked, n_class, size, seed).items()}
    rng = np.random.RandomState(seed + 1)
    for d in ('Annotations', os.path.join('ImageSets', 'Main')):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    every = []
    for split in sorted(set(masked) | set(unmasked)):
        ids = ['%s_%03d' % (split, i) for i in range(masked.get(split, 0))]
        for i in range(unmasked.get(split, 0)):
            image_id = '%s_img_%03d' % (split, i)
            img = rng.randint(0, 256, size + (3,)).astype(np.uint8)
            PIL.Image.fromarray(img).save(
                os.path.join(root, 'JPEGImages', image_id + '.jpg'))
            classes = ([] if i % 3 == 2 else rng.choice(
                np.arange(1, n_class), rng.randint(1, 3), replace=False))
            written[image_id] = (img, None, classes)
            ids.append(image_id)
        for image_id in ids:
            img, lbl, classes = written[image_id]
            if lbl is not None:
                classes = sorted(set(np.unique(lbl)) - {0, 255})
            labels = np.zeros(len(VOC_CLASS_NAMES) - 1, np.int32)
            labels[np.asarray(classes, int) - 1] = 1
            write_annotation(
                os.path.join(root, 'Annotations', image_id + '.xml'),
                [(VOC_CLASS_NAMES[c], 0) for c in classes], size)
            written[image_id] = (img, lbl, labels)
        with open(os.path.join(root, 'ImageSets', 'Main',
                               split + '.txt'), 'w') as f:
            f.write('\n'.join(ids) + '\n')
        every += ids
    with open(os.path.join(root, 'ImageSets', 'Main', 'trainval.txt'),
              'w') as f:
        f.write('\n'.join(every) + '\n')
    return written
