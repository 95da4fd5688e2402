"""datasets/voc.py: the VOC reader, and each bad input a one-line error."""
import os
import shutil
import struct
import threading
import zlib

import numpy as np
import PIL.Image
import PIL.ImageFile
import pytest

from datasets import (VOC_CLASS_NAMES, DatasetError, VOCSegmentation,
                      get_dataset)
from datasets.voc import read_image, read_label, voc_palette
from helpers import (break_voc, error_line, fcn_batch4_args, read_tree,
                     run_script, voc_copy, write_example, write_voc)
from models import FCN8s
from models.io import load_model, save_model


def test_voc_example_keeps_its_mask_labels(tmp_path):
    """The segmentation reader's labels are still the classes of its
    mask (its example is now a triple)."""
    root = str(tmp_path)
    for d in ('JPEGImages', 'SegmentationClass',
              os.path.join('ImageSets', 'Segmentation')):
        os.makedirs(os.path.join(root, d))
    lbl = np.zeros((16, 16), np.uint8)
    lbl[2:6, 2:6], lbl[8:12, 8:12], lbl[0] = 2, 5, 255
    write_example(root, 'a', np.zeros((16, 16, 3), np.uint8), lbl)
    with open(os.path.join(root, 'ImageSets', 'Segmentation', 'x.txt'),
              'w') as f:
        f.write('a\n')
    img, label_map, labels = get_dataset('voc', root, 'x')[0]
    assert np.flatnonzero(labels).tolist() == [1, 4]
    assert labels.shape == (20,) and labels.dtype == np.int32


def png_header(path, width, height, mode=2):
    """A PNG whose header says ``width x height`` (RGB, or palette with
    ``mode`` 3) and whose data is a few bytes: only a decoder would find
    out."""
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack(
            '>IIBBBBB', width, height, 8, mode, 0, 0, 0)) +
            (chunk(b'PLTE', bytes(768)) if mode == 3 else b'') +
            chunk(b'IDAT', zlib.compress(b'\0' * 64)) + chunk(b'IEND', b''))


@pytest.fixture
def never_decoded(monkeypatch):
    def load(self):
        raise AssertionError('an image was decoded')
    monkeypatch.setattr(PIL.ImageFile.ImageFile, 'load', load)


@pytest.mark.parametrize('reader', [read_image, read_label])
def test_a_huge_header_is_refused_before_decoding(tmp_path, never_decoded,
                                                  reader):
    path = str(tmp_path / 'huge.png')
    png_header(path, 10000, 10000, mode=3 if reader is read_label else 2)
    with pytest.raises(DatasetError) as e:
        reader(path)
    assert str(e.value) == (
        '%s: %s of 10000x10000 pixels (width x height) is larger than '
        '--max-image-pixels 16777216; downscale it or raise that flag'
        % (path, 'image' if reader is read_image else 'label image'))


def test_evaluate_on_a_huge_image_is_one_line(tmp_path, monkeypatch,
                                              capsys):
    voc = str(tmp_path / 'VOC')
    write_voc(voc, {'val': 2})
    huge = os.path.join(voc, 'JPEGImages', 'val_001.jpg')
    png_header(huge, 10000, 10000)          # PIL reads it by its content
    np.random.seed(0)
    model = str(tmp_path / 'model.npz')
    save_model(model, FCN8s(21, 1 / 16.))
    code, err = run_script('evaluate', [
        '--dataset', 'voc', '--data-dir', voc, '--split', 'val',
        '--modelfile', model, '--out', tmp_path / 'eval',
        '--max-image-pixels', 1000], monkeypatch, capsys)
    assert code == 2
    assert error_line(err).startswith(
        'error: %s: image of 48x40 pixels (width x height) is larger than '
        '--max-image-pixels 1000' % os.path.join(voc, 'JPEGImages',
                                                  'val_000.jpg'))
    code, err = run_script('evaluate', [
        '--dataset', 'voc', '--data-dir', voc, '--split', 'val',
        '--modelfile', model, '--out', tmp_path / 'eval2'],
        monkeypatch, capsys)
    assert code == 2
    assert error_line(err) == (
        'error: %s: image of 10000x10000 pixels (width x height) is larger '
        'than --max-image-pixels 16777216; downscale it or raise that flag'
        % huge)


def test_a_fifo_is_never_opened_for_reading(tmp_path):
    fifo = str(tmp_path / 'photo.jpg')
    os.mkfifo(fifo)
    errors = []

    def read():
        try:
            read_image(fifo)
        except DatasetError as e:
            errors.append(str(e))
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(60)                 # the old reader waited forever
    assert errors == ['%s: a FIFO, not a regular file' % fifo]


def write_list(root, lines):
    path = os.path.join(root, 'ImageSets', 'Segmentation', 'train.txt')
    with open(path, 'w') as f:
        f.write(''.join(line + '\n' for line in lines))
    return path


def test_an_id_listed_twice_is_refused_naming_the_line(tmp_path, monkeypatch,
                                                       capsys):
    root = str(tmp_path / 'VOC')
    write_voc(root, {'train': 3})
    path = write_list(root, ['train_000', 'train_001', '', 'train_000 ',
                             'train_002'])
    with pytest.raises(DatasetError) as e:
        VOCSegmentation(root, 'train')
    assert str(e.value) == ("%s line 4: 'train_000' is listed again (first "
                            "on line 1); each image may be listed once"
                            % path)
    np.random.seed(0)
    model = str(tmp_path / 'model.npz')
    save_model(model, FCN8s(21, 1 / 16.))
    code, err = run_script('evaluate', [
        '--dataset', 'voc', '--data-dir', root, '--split', 'train',
        '--modelfile', model, '--out', tmp_path / 'eval'], monkeypatch,
        capsys)
    assert code == 2 and error_line(err) == 'error: ' + str(e.value)
    assert not (tmp_path / 'eval').exists()


def test_an_id_with_a_space_is_the_whole_line(tmp_path):
    root = str(tmp_path / 'VOC')
    write_voc(root, {'train': 2})
    for d, ext in (('JPEGImages', '.jpg'), ('SegmentationClass', '.png')):
        os.rename(os.path.join(root, d, 'train_000' + ext),
                  os.path.join(root, d, 'my image' + ext))
    write_list(root, ['  my image\t', 'train_001'])
    dataset = VOCSegmentation(root, 'train')
    assert dataset.ids == ['my image', 'train_001']
    assert dataset.image_files[0] == os.path.join(root, 'JPEGImages',
                                                  'my image.jpg')
    dataset[0]
    # never another file: 'my image' is not 'my'
    for d, ext in (('JPEGImages', '.jpg'), ('SegmentationClass', '.png')):
        os.rename(os.path.join(root, d, 'my image' + ext),
                  os.path.join(root, d, 'my' + ext))
    with pytest.raises(DatasetError, match="names 1 of 2 images without "
                       "their files, e.g. .*/JPEGImages/my image.jpg"):
        VOCSegmentation(root, 'train')


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


def test_tiny_voc_written_images_read_back(tmp_path):
    written = write_voc(str(tmp_path), {'train': 3}, n_class=4)
    dataset = VOCSegmentation(str(tmp_path), 'train')
    for i, image_id in enumerate(dataset.ids):
        img, lbl, _ = dataset[i]
        src_img, src_lbl = written[image_id]
        expected = src_lbl.astype(np.int32)
        expected[expected == 255] = -1
        assert np.array_equal(lbl, expected)
        assert img.shape == src_img.shape and img.dtype == np.uint8
        decoded = np.asarray(PIL.Image.open(dataset.image_files[i]))
        assert np.array_equal(img, decoded)  # RGB order, no resampling


def test_voc_palette_colours():
    """The colours VOC's label PNGs use (devkit's VOClabelcolormap)."""
    palette = np.array(voc_palette()).reshape(256, 3)
    assert palette[0].tolist() == [0, 0, 0]
    assert palette[1].tolist() == [128, 0, 0]        # aeroplane
    assert palette[15].tolist() == [192, 128, 128]   # person
    assert palette[20].tolist() == [0, 64, 128]      # tvmonitor
    assert palette[255].tolist() == [224, 224, 192]  # void


@pytest.mark.parametrize('how,message', [
    ('missing-image', 'names 1 of 5 images without their files'),
    ('empty-split', "split 'train' is empty"),
    ('binary-split', 'not UTF-8 text'),
    ('no-split', 'no split file'),
    ('not-voc', 'not a VOC-format directory'),
    ('random-jpeg', 'not a readable image'),
    ('truncated-jpeg', 'not a readable image'),
    ('label-out-of-range', 'label values [25] outside 0..20 and 255'),
    ('label-size', 'image is 32x40 but its label'),
    ('label-rgb', 'must be a palette or grayscale image, got mode RGB'),
])
def test_bad_dataset(files, tmp_path, monkeypatch, capsys, how, message):
    """Errors at construction and inside trainer.run alike (the image and
    label ones are raised by the iterator in the training loop)."""
    root = voc_copy(files, tmp_path)
    named = break_voc(root, how)
    code, err = run_script('train_fcn',
                           fcn_batch4_args(root, tmp_path / 'out'),
                           monkeypatch, capsys)
    line = error_line(err)
    assert code == 2 and named in line and message in line, line
    assert 'Exception in main training loop' not in err
    assert not os.path.exists(str(tmp_path / 'out' / 'model.npz'))


@pytest.mark.parametrize('data_dir,message', [
    ('nowhere', 'data directory does not exist'),
    ('file', 'data directory is a file'),
])
def test_bad_data_dir(files, tmp_path, monkeypatch, capsys, data_dir,
                      message):
    path = str(tmp_path / data_dir)
    if data_dir == 'file':
        open(path, 'w').close()
    code, err = run_script('train_fcn',
                           fcn_batch4_args(path, tmp_path / 'out'),
                           monkeypatch, capsys)
    assert code == 2 and message in error_line(err)


def odd_voc(root):
    """Images that are tiny, non-square, grayscale, RGBA, CMYK, palette."""
    write_voc(root, {'train': 7}, size=(16, 16))
    rng = np.random.RandomState(0)
    specs = [((1, 1), 'RGB'), ((8, 8), 'RGB'), ((9, 40), 'RGB'),
             ((20, 20), 'L'), ((20, 12), 'RGBA'), ((12, 20), 'CMYK'),
             ((16, 16), 'P')]
    for i, (size, mode) in enumerate(specs):
        img = PIL.Image.fromarray(rng.randint(0, 256, size + (3,), np.uint8))
        img = img.convert(mode)
        fmt = 'PNG' if mode in ('RGBA', 'P') else 'JPEG'
        img.save(os.path.join(root, 'JPEGImages', 'train_%03d.jpg' % i), fmt)
        lbl = np.zeros(size, np.uint8)
        lbl[size[0] // 2:, size[1] // 2:] = 1 + i % 3
        lbl = PIL.Image.fromarray(lbl, mode='P')
        lbl.putpalette(voc_palette())
        lbl.save(os.path.join(root, 'SegmentationClass', 'train_%03d.png' % i))


def test_tiny_and_odd_images_train_through_segment_and_classify(
        files, tmp_path, monkeypatch, capsys):
    root = str(tmp_path / 'odd')
    odd_voc(root)
    common = ['--dataset', 'voc', '--data-dir', root, '--iterations', 7,
              '--batch-size', 1, '--val-split', '']
    code, err = run_script('train_fcn', common + ['--out', tmp_path / 'fcn',
                                                  '--width', 1 / 16.],
                           monkeypatch, capsys)
    assert code == 0, err
    code, err = run_script('train_GAIN', common + [
        '--out', tmp_path / 'gain', '--modelfile', files['good'],
        '--ext-weight', 1, '--ext-images', 0.5, '--attention-interval', 7],
        monkeypatch, capsys)
    assert code == 0, err
    model, _ = load_model(str(tmp_path / 'gain' / 'model.npz'))
    assert all(np.isfinite(p.array).all() for p in model.params())


@pytest.mark.parametrize('line,problem', [
    ('../../victim/v', "has a '..' component"),
    ('a/../../x', "has a '..' component"),
    ('/etc/passwd', 'is an absolute path'),
    ('x\0y', 'holds a NUL character'),
    ('/JPEGImages/../../x.jpg /SegmentationClass/x.png',
     "has a '..' component"),
])
def test_ids_outside_the_dataset_are_refused_naming_the_line(tmp_path, line,
                                                            problem):
    root = str(tmp_path / 'VOC')
    write_voc(root, {'train': 2})
    split = os.path.join(root, 'ImageSets', 'Segmentation', 'train.txt')
    with open(split, 'a') as f:
        f.write(line + '\n')
    with pytest.raises(DatasetError) as e:
        VOCSegmentation(root, 'train')
    assert str(e.value).startswith('%s line 3: ' % split)
    assert problem in str(e.value) and '\n' not in str(e.value)


def victim_voc(tmp_path):
    """A VOC dir whose train list names ``../../victim/v`` (a real image
    and label outside the dataset); returns the victim directory."""
    root = str(tmp_path / 'data' / 'VOC')
    write_voc(root, {'train': 2}, n_class=21)
    victim = str(tmp_path / 'data' / 'victim')
    os.makedirs(victim)
    for ext in ('.jpg', '.png'):
        shutil.copy(os.path.join(root, 'JPEGImages' if ext == '.jpg' else
                                 'SegmentationClass', 'train_000' + ext),
                    os.path.join(victim, 'v' + ext))
    with open(os.path.join(root, 'ImageSets', 'Segmentation', 'train.txt'),
              'a') as f:
        f.write('../../victim/v\n')
    return root, victim


@pytest.mark.parametrize('script', ['make_pseudo_labels', 'visualize'])
def test_a_dotdot_id_leaves_files_outside_out_byte_identical(
        files, tmp_path, monkeypatch, capsys, script):
    root, victim = victim_voc(tmp_path)
    before = read_tree(victim)
    if script == 'make_pseudo_labels':
        argv = ['--modelfile', files['model']]
    else:
        argv = ['--pretrained', files['model'], '--trained', files['model'],
                '--save-cams', '--all']
    code, err = run_script(script, ['--dataset', 'voc', '--data-dir', root,
                                    '--split', 'train',
                                    '--out', tmp_path / 'out'] + argv,
                           monkeypatch, capsys)
    assert code == 2 and "line 3: '../../victim/v'" in error_line(err)
    assert read_tree(victim) == before
    assert not any(os.path.islink(os.path.join(victim, n))
                   for n in os.listdir(victim))


def write_gray16(path, values):
    PIL.Image.fromarray(np.asarray(values, np.uint16)).save(path)


def test_16_bit_images_are_scaled_by_their_bit_depth(tmp_path):
    ramp = np.arange(0, 4096, 16).reshape(16, 16)           # 12-bit data
    write_gray16(str(tmp_path / 'twelve.png'), ramp)
    img = read_image(str(tmp_path / 'twelve.png'))
    np.testing.assert_array_equal(img[:, :, 0],
                                  np.round(ramp * 255 / 65535.))
    # Two images one value apart are scaled alike.
    a, b = np.full((4, 4), 7), np.full((4, 4), 7)
    a[0, 0], b[0, 0] = 255, 256
    write_gray16(str(tmp_path / 'a.png'), a)
    write_gray16(str(tmp_path / 'b.png'), b)
    ia, ib = (read_image(str(tmp_path / n))[:, :, 0] for n in ('a.png',
                                                              'b.png'))
    np.testing.assert_array_equal(ia[1:], ib[1:])
    assert ia[0, 0] == ib[0, 0] == 1


@pytest.mark.parametrize('mode', ['I', 'F'])
def test_images_without_a_fixed_range_are_refused(tmp_path, mode):
    path = str(tmp_path / 'x.tif')
    PIL.Image.fromarray(np.ones((4, 4), {'I': np.int32,
                                         'F': np.float32}[mode])).save(path)
    with pytest.raises(DatasetError) as e:
        read_image(path)
    assert str(e.value).startswith(path + ': image of mode %s' % mode)


def test_a_split_list_with_a_byte_order_mark(tmp_path):
    root = str(tmp_path / 'VOC')
    write_voc(root, {'train': 2})
    split = os.path.join(root, 'ImageSets', 'Segmentation', 'train.txt')
    with open(split, 'w', encoding='utf-8-sig') as f:
        f.write('train_000\ntrain_001\n')
    dataset = VOCSegmentation(root, 'train')
    assert dataset.ids == ['train_000', 'train_001']
    dataset[0]


def test_a_deeplab_train_aug_list(tmp_path):
    """Both label folders exist (VOC2012 plus SegmentationClassAug): the
    label named on the line is used."""
    root = str(tmp_path / 'VOC')
    written = write_voc(root, {'train': 2})
    shutil.copytree(os.path.join(root, 'SegmentationClass'),
                    os.path.join(root, 'SegmentationClassAug'))
    os.remove(os.path.join(root, 'SegmentationClass', 'train_001.png'))
    with open(os.path.join(root, 'train_aug.txt'), 'w') as f:
        f.write(''.join('/JPEGImages/%s.jpg /SegmentationClassAug/%s.png\n'
                        % (i, i) for i in sorted(written)))
    dataset = VOCSegmentation(root, 'train_aug')
    assert dataset.ids == ['train_000', 'train_001']
    assert dataset.label_files[1] == os.path.join(
        root, 'SegmentationClassAug', 'train_001.png')
    lbl = dataset[1][1]
    np.testing.assert_array_equal(
        lbl, np.where(written['train_001'][1] == 255, -1,
                      written['train_001'][1]))
