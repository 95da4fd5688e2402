"""Seeded fuzzing of the VOC reader: random, truncated, bit-flipped,
wrong-mode, wrong-size and out-of-range image and label files. Every
failure must be a one-line DatasetError naming the file; every success a
well-formed example."""
import os

import numpy as np
import PIL.Image
import pytest

from datasets.voc import voc_palette
from helpers import write_voc
from datasets import VOC_CLASS_NAMES, DatasetError, VOCSegmentation

N_CASES = 60
SIZE = (32, 40)

# kind -> expected outcome: 'fail', 'ok' or 'any' (e.g. a bit flip that
# happens to decode).
IMAGE_KINDS = {
    'random-bytes': 'fail', 'empty': 'fail', 'truncated-jpeg': 'fail',
    'flipped-bytes': 'any', 'text': 'fail', 'wrong-size': 'fail',
    'gray': 'ok', 'rgba-png': 'ok', 'cmyk': 'ok', 'palette-gif': 'ok',
    'gray16-png': 'ok', 'one-bit': 'ok',
}
LABEL_KINDS = {
    'random-bytes': 'fail', 'empty': 'fail', 'truncated-png': 'fail',
    'flipped-bytes': 'any', 'rgb-label': 'fail', 'out-of-range': 'fail',
    'wrong-size': 'fail', 'jpeg-label': 'fail', 'gray16-label': 'ok',
    'gray-label': 'ok',
}


def _flip(data, rng, n):
    data = bytearray(data)
    for pos in rng.randint(0, len(data), n):
        data[pos] ^= 1 << rng.randint(8)
    return bytes(data)


def corrupt_image(path, kind, rng):
    data = open(path, 'rb').read()
    img = np.asarray(PIL.Image.open(path).convert('RGB'))
    if kind == 'random-bytes':
        data = rng.bytes(rng.randint(1, 3000))
    elif kind == 'empty':
        data = b''
    elif kind == 'truncated-jpeg':
        data = data[:rng.randint(0, len(data) - 2)]
    elif kind == 'flipped-bytes':
        data = _flip(data, rng, rng.randint(1, 20))
    elif kind == 'text':
        data = b'this is not an image\n'
    else:
        if kind == 'wrong-size':
            im = PIL.Image.fromarray(img[:-rng.randint(1, 8)])
            fmt = 'JPEG'
        elif kind == 'gray':
            im, fmt = PIL.Image.fromarray(img).convert('L'), 'JPEG'
        elif kind == 'rgba-png':
            im, fmt = PIL.Image.fromarray(img).convert('RGBA'), 'PNG'
        elif kind == 'cmyk':
            im, fmt = PIL.Image.fromarray(img).convert('CMYK'), 'JPEG'
        elif kind == 'palette-gif':
            im, fmt = PIL.Image.fromarray(img).convert('P'), 'GIF'
        elif kind == 'gray16-png':
            im = PIL.Image.fromarray(img[:, :, 0].astype(np.uint16) * 257)
            fmt = 'PNG'
        elif kind == 'one-bit':
            im, fmt = PIL.Image.fromarray(img).convert('1'), 'PNG'
        im.save(path, fmt)
        return
    open(path, 'wb').write(data)


def corrupt_label(path, kind, rng):
    data = open(path, 'rb').read()
    lbl = np.asarray(PIL.Image.open(path))
    if kind == 'random-bytes':
        data = rng.bytes(rng.randint(1, 3000))
    elif kind == 'empty':
        data = b''
    elif kind == 'truncated-png':
        data = data[:rng.randint(0, len(data) - 20)]   # IEND is optional
    elif kind == 'flipped-bytes':
        data = _flip(data, rng, rng.randint(1, 20))
    else:
        if kind == 'rgb-label':
            im = PIL.Image.fromarray(np.stack([lbl] * 3, axis=2))
        elif kind == 'out-of-range':
            bad = lbl.copy()
            y, x = rng.randint(1, SIZE[0]), rng.randint(SIZE[1])
            bad[y, x] = rng.randint(len(VOC_CLASS_NAMES), 255)
            im = PIL.Image.fromarray(bad, mode='P')
            im.putpalette(voc_palette())
        elif kind == 'wrong-size':
            im = PIL.Image.fromarray(lbl[:, :-rng.randint(1, 8)], mode='P')
        elif kind == 'jpeg-label':
            im = PIL.Image.fromarray(np.stack([lbl] * 3, axis=2))
            im.save(path, 'JPEG')
            return
        elif kind == 'gray16-label':
            im = PIL.Image.fromarray(lbl.astype(np.uint16))
        elif kind == 'gray-label':
            im = PIL.Image.fromarray(lbl, mode='L')
        im.save(path, 'PNG')
        return
    open(path, 'wb').write(data)


def test_fuzzed_files_fail_as_one_line_dataset_errors(tmp_path):
    rng = np.random.RandomState(2024)
    root = str(tmp_path / 'VOC')
    write_voc(root, {'train': N_CASES}, size=SIZE, seed=3)
    dataset = VOCSegmentation(root, 'train')
    outcomes = []
    for i in range(N_CASES):
        if rng.rand() < 0.5:
            kind = sorted(IMAGE_KINDS)[rng.randint(len(IMAGE_KINDS))]
            path, expected = dataset.image_files[i], IMAGE_KINDS[kind]
            corrupt_image(path, kind, rng)
        else:
            kind = sorted(LABEL_KINDS)[rng.randint(len(LABEL_KINDS))]
            path, expected = dataset.label_files[i], LABEL_KINDS[kind]
            corrupt_label(path, kind, rng)
        case = '%d %s %s' % (i, kind, os.path.basename(path))
        try:
            img, lbl, _ = dataset.get_example(i)
        except DatasetError as e:
            message = str(e)
            assert path in message, case
            assert '\n' not in message, case
            assert expected in ('fail', 'any'), (case, message)
            outcomes.append('fail')
            continue
        # Anything else than a DatasetError fails the test by itself.
        assert expected in ('ok', 'any'), case
        assert img.dtype == np.uint8 and img.ndim == 3, case
        assert img.shape == SIZE + (3,) and lbl.shape == SIZE, case
        assert lbl.dtype == np.int32, case
        assert lbl.min() >= -1 and lbl.max() < len(VOC_CLASS_NAMES), case
        outcomes.append('ok')
    assert 15 < outcomes.count('fail') < N_CASES - 10      # both happen


@pytest.mark.parametrize('size', [(1, 1), (8, 8), (3, 50), (1500, 2000)])
def test_tiny_huge_and_odd_sizes_read(tmp_path, size):
    root = str(tmp_path / 'VOC')
    write_voc(root, {'train': 1}, size=(16, 16))
    img = np.random.RandomState(0).randint(0, 256, size + (3,), np.uint8)
    PIL.Image.fromarray(img).save(
        os.path.join(root, 'JPEGImages', 'train_000.jpg'))
    lbl = PIL.Image.fromarray(np.zeros(size, np.uint8), mode='P')
    lbl.save(os.path.join(root, 'SegmentationClass', 'train_000.png'))
    got, got_lbl, _ = VOCSegmentation(root, 'train')[0]
    assert got.shape == size + (3,) and got_lbl.shape == size


def test_an_image_over_the_pixel_limit_is_a_dataset_error(tmp_path):
    root = str(tmp_path / 'VOC')
    write_voc(root, {'train': 1}, size=(40, 48))
    with pytest.raises(DatasetError, match='train_000.jpg: image of 48x40 '
                       'pixels .width x height. is larger than '
                       '--max-image-pixels 100'):
        VOCSegmentation(root, 'train', max_pixels=100)[0]
    assert VOCSegmentation(root, 'train', max_pixels=48 * 40)[0][0].shape \
        == (40, 48, 3)
