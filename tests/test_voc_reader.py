"""The VOC reader never hangs, never decodes a huge image, and never
counts an image twice or reads another file than its list names."""
import os
import struct
import subprocess
import sys
import threading
import zlib

import numpy as np
import PIL.ImageFile
import pytest

from datasets import DatasetError, VOCSegmentation
from datasets.voc import read_image, read_label
from helpers import error_line, run_script, write_voc
from models import FCN8s
from runtime.model_files import save_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    assert errors == ['%s: a FIFO, not a regular file; only image files are '
                      'read' % fifo]


def test_visualize_skips_a_fifo_among_its_images(tmp_path):
    folder = tmp_path / 'photos'
    write_voc(str(tmp_path / 'v'), {'x': 1}, n_class=21)
    folder.mkdir()
    os.rename(str(tmp_path / 'v' / 'JPEGImages' / 'x_000.jpg'),
              str(folder / 'a.jpg'))
    os.mkfifo(str(folder / 'fifo.jpg'))
    np.random.seed(0)
    model = FCN8s(21, 1 / 16.)
    model.head_trained_by = ['a test fixture']
    path = str(tmp_path / 'model.npz')
    save_model(path, model)
    done = subprocess.run(
        [sys.executable, 'visualize.py', '--images', str(folder), '--out',
         str(tmp_path / 'vis'), '--pretrained', path, '--trained', path],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert ('warning: %s: a FIFO, not a regular file; only image files are '
            'read; skipped' % (folder / 'fifo.jpg')) in done.stderr
    assert 'skipped 1 unreadable files' in done.stdout
    assert (tmp_path / 'vis' / 'a.png').is_file()


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
