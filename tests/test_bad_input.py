"""Bad input to the training scripts: each is one line ``error: ...`` and a
non-zero exit, never a traceback. The scripts run in-process through
``cli.run`` (an exception that it does not turn into an exit fails the
test); two cases also run as real processes."""
import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest

from datasets.voc import voc_palette
from helpers import error_line, run_script, write_voc
from models import FCN8s, grad_cam
from models.fcn8s import CLASSIFICATION_HEAD
from runtime.errors import ModelFileError
from runtime.model_files import load_model, save_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_VOC = 21


run = run_script


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A tiny VOC dir and model files (VOC's 21 classes, width 1/16)."""
    base = tmp_path_factory.mktemp('bad')
    voc = str(base / 'VOC')
    write_voc(voc, {'train': 4, 'val': 2}, size=(32, 40))
    np.random.seed(0)
    model = FCN8s(N_VOC, 1 / 16.)
    paths = dict(voc=voc, good=str(base / 'good.npz'),
                 untrained=str(base / 'untrained.npz'))
    save_model(paths['untrained'], model)     # a head at its random start
    model.head_trained_by = ['a test fixture']
    save_model(paths['good'], model)
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
    paths['text'] = str(base / 'text.npz')
    open(paths['text'], 'w').write('not a model\n')
    data = open(paths['good'], 'rb').read()
    paths['truncated'] = str(base / 'truncated.npz')
    open(paths['truncated'], 'wb').write(data[:len(data) // 2])
    paths['npy'] = str(base / 'array.npz')
    with open(paths['npy'], 'wb') as f:
        np.save(f, np.zeros(3))
    paths['missing'] = str(base / 'missing.npz')
    paths['dir'] = str(base)
    return paths


# -- --modelfile ----------------------------------------------------------
@pytest.mark.parametrize('name,script,message', [
    ('missing', 'train_classifier', 'no such model file'),
    ('dir', 'train_classifier', 'is a directory'),
    ('text', 'train_classifier', 'not a model file (not an npz archive)'),
    ('truncated', 'train_classifier', 'not a model file'),
    ('npy', 'train_classifier', 'a single array'),
    ('vgg', 'train_classifier', 'not an FCN8s model file'),
    ('n5', 'train_classifier', 'has n_class=5, expected 21'),
    ('nan', 'train_classifier', 'fc7/b holds NaN or inf'),
    ('nohead', 'train_GAIN', 'has no GAIN classification head'),
    ('untrained', 'train_GAIN', 'classification head was never trained'),
    ('untrained', 'make_pseudo_labels', 'head was never trained'),
    ('n5', 'train_fcn', 'has n_class=5'),
])
def test_bad_modelfile(files, tmp_path, monkeypatch, capsys, name, script,
                       message):
    code, err = run(script, ['--dataset', 'voc', '--data-dir', files['voc'],
                             '--modelfile', files[name], '--out', tmp_path],
                    monkeypatch, capsys)
    line = error_line(err)
    assert code == 2 and files[name] in line and message in line, line


def test_model_of_another_width(files, tmp_path, monkeypatch, capsys):
    code, err = run('train_fcn', ['--dataset', 'voc', '--data-dir',
                                  files['voc'], '--modelfile', files['good'],
                                  '--width', '0.125', '--out', tmp_path],
                    monkeypatch, capsys)
    assert code == 2
    assert 'has width=0.0625, expected 0.125' in error_line(err)


def test_every_truncation_of_a_model_file_is_a_model_file_error(files,
                                                                tmp_path):
    data = open(files['good'], 'rb').read()
    rng = np.random.RandomState(0)
    for cut in [0, 1, 30, len(data) - 1] + list(rng.randint(0, len(data), 8)):
        path = str(tmp_path / 'cut.npz')
        open(path, 'wb').write(data[:cut])
        with pytest.raises(ModelFileError, match='cut.npz'):
            load_model(path)


# -- --data-dir and the dataset -------------------------------------------
def voc_copy(files, tmp_path):
    import shutil
    root = str(tmp_path / 'VOC')
    shutil.copytree(files['voc'], root)
    return root


def fcn_args(root, out, *extra):
    return ['--dataset', 'voc', '--data-dir', root, '--out', out,
            '--iterations', 2, '--batch-size', 4, '--val-split', '',
            '--width', 1 / 16.] + list(extra)


def _break(root, how):
    """Break the dataset at ``root``; returns the file the error names."""
    jpg = os.path.join(root, 'JPEGImages', 'train_001.jpg')
    png = os.path.join(root, 'SegmentationClass', 'train_001.png')
    split = os.path.join(root, 'ImageSets', 'Segmentation', 'train.txt')
    if how == 'missing-image':
        with open(split, 'a') as f:
            f.write('ghost\n')
        return split
    if how == 'empty-split':
        open(split, 'w').write('\n\n')
        return split
    if how == 'binary-split':
        open(split, 'wb').write(np.random.RandomState(0).bytes(300))
        return split
    if how == 'no-split':
        os.remove(split)
        return 'train'
    if how == 'not-voc':
        import shutil
        shutil.rmtree(os.path.join(root, 'SegmentationClass'))
        return root
    if how == 'random-jpeg':
        open(jpg, 'wb').write(np.random.RandomState(0).bytes(500))
        return jpg
    if how == 'truncated-jpeg':
        data = open(jpg, 'rb').read()
        open(jpg, 'wb').write(data[:len(data) // 2])
        return jpg
    lbl = np.asarray(PIL.Image.open(png))
    if how == 'label-out-of-range':
        lbl = lbl.copy()
        lbl[5, 5] = 25
    elif how == 'label-size':
        lbl = lbl[:-3]
    elif how == 'label-rgb':
        PIL.Image.fromarray(np.stack([lbl] * 3, 2)).save(png)
        return png
    im = PIL.Image.fromarray(lbl, mode='P')
    im.putpalette(voc_palette())
    im.save(png)
    return jpg if how == 'label-size' else png


@pytest.mark.parametrize('how,message', [
    ('missing-image', 'names 1 of 5 images without their files'),
    ('empty-split', "split 'train' is empty"),
    ('binary-split', 'unreadable split file'),
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
    named = _break(root, how)
    code, err = run('train_fcn', fcn_args(root, tmp_path / 'out'),
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
    code, err = run('train_fcn', fcn_args(path, tmp_path / 'out'),
                    monkeypatch, capsys)
    assert code == 2 and message in error_line(err)


def test_mixed_image_sizes_share_a_batch(files, tmp_path, monkeypatch,
                                         capsys):
    """Images of two sizes in one split train at --batch-size 4 (padded,
    see tests/test_padded_batches.py); they were refused before."""
    root = voc_copy(files, tmp_path)
    write_voc(root, {'train': 2}, size=(36, 40), seed=4)    # replaces 2
    with open(os.path.join(root, 'ImageSets', 'Segmentation', 'train.txt'),
              'a') as f:
        f.write('val_000\nval_001\n')                       # 32x40 ones
    code, err = run('train_fcn', fcn_args(root, tmp_path / 'out'),
                    monkeypatch, capsys)
    assert code == 0, err


def test_skip_bad_skips_warns_and_logs(files, tmp_path, monkeypatch, capsys):
    root = voc_copy(files, tmp_path)
    jpg = _break(root, 'random-jpeg')
    _break(root, 'missing-image')
    out = tmp_path / 'out'
    code, err = run('train_fcn', fcn_args(root, out, '--skip-bad',
                                          '--iterations', 10,
                                          '--batch-size', 1),
                    monkeypatch, capsys)
    assert code == 0, err
    assert 'skipping 1 of 5 images without their files' in err
    assert 'warning: skipping a bad train sample' in err and jpg in err
    import json
    log = json.load(open(str(out / 'log')))
    assert log[-1]['bad_samples'] == 2
    assert os.path.exists(str(out / 'model.npz'))


# -- odd images -----------------------------------------------------------
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
    code, err = run('train_fcn', common + ['--out', tmp_path / 'fcn',
                                           '--width', 1 / 16.],
                    monkeypatch, capsys)
    assert code == 0, err
    code, err = run('train_GAIN', common + [
        '--out', tmp_path / 'gain', '--modelfile', files['good'],
        '--ext-weight', 1, '--ext-images', 0.5, '--attention-interval', 7],
        monkeypatch, capsys)
    assert code == 0, err
    model, _ = load_model(str(tmp_path / 'gain' / 'model.npz'))
    assert all(np.isfinite(p.array).all() for p in model.params())


@pytest.mark.parametrize('size', [(1, 1), (2, 3), (8, 8), (5, 33)])
def test_tiny_images_through_fcn8s(thin_model, size):
    x = np.random.RandomState(0).normal(0, 50, (2, 3) + size).astype(
        np.float32)
    seg = thin_model.segment(x)
    logits = thin_model.classify(x)
    cam = grad_cam(thin_model, x, np.array([0, 2]))
    assert seg.shape == (2, 4) + size and logits.shape == (2, 3)
    assert cam.shape == (2,) + size
    for v in (seg, logits, cam):
        assert np.isfinite(v.array).all()


# -- flags ----------------------------------------------------------------
@pytest.mark.parametrize('script,flags,message', [
    ('train_fcn', ['--lr', '-1'], '--lr must be a finite number > 0'),
    ('train_fcn', ['--lr', '0'], '--lr must be'),
    ('train_fcn', ['--lr', 'nan'], '--lr must be'),
    ('train_fcn', ['--lr', 'abc'], "argument --lr: invalid float value"),
    ('train_fcn', ['--batch-size', '0'], '--batch-size must be > 0'),
    ('train_fcn', ['--iterations', '-3'], '--iterations must be > 0'),
    ('train_fcn', ['--epochs', 'inf'], '--epochs must be'),
    ('train_fcn', ['--snapshot-interval', '0'],
     '--snapshot-interval must be > 0'),
    ('train_fcn', ['--width', '2'], '--width must be in [1/64, 1], got 2'),
    ('train_fcn', ['--weight-decay', '-1'], '--weight-decay must be'),
    ('train_fcn', ['--resume', '--force'], 'contradict'),
    ('train_fcn', ['--no-such-flag'], 'unrecognized arguments'),
    ('train_GAIN', ['--sigma', '1.5'], '--sigma must be in (0, 1)'),
    ('train_GAIN', ['--sigma', '0'], '--sigma must be in (0, 1)'),
    ('train_GAIN', ['--sigma', 'nan'], '--sigma must be in (0, 1)'),
    ('train_GAIN', ['--omega', 'inf'], '--omega must be'),
    ('train_GAIN', ['--am-weight', 'nan'], '--am-weight must be a finite number >= 0'),
    ('train_GAIN', ['--attention-interval', '0'],
     '--attention-interval must be > 0'),
    ('train_GAIN', ['--ext-images', '7.5', '--ext-weight', '1'],
     '--ext-images 7.5'),
    ('train_GAIN', ['--ext-images', '20'], 'GAIN_ext needs both'),
    ('train_GAIN', ['--ext-weight', '1'], 'GAIN_ext needs both'),
    ('train_GAIN', ['--ext-images', 'abc'], '--ext-images must be'),
    ('train_GAIN', ['--am-warmup', '3x'], "--am-warmup: warm-up must be N"),
    ('train_GAIN', ['--ext-warmup=-1'],
     '--ext-warmup: warm-up must be a finite number >= 0'),
])
def test_flags_out_of_range(files, tmp_path, monkeypatch, capsys, script,
                            flags, message):
    argv = ['--dataset', 'voc', '--data-dir', files['voc'], '--out', tmp_path]
    if script == 'train_GAIN':
        argv += ['--modelfile', files['good']]
    code, err = run(script, argv + flags, monkeypatch, capsys)
    assert code == 2 and message in error_line(err)


# -- --out ----------------------------------------------------------------
def test_finished_run_is_kept_unless_force(files, tmp_path, monkeypatch,
                                           capsys):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'model.npz').write_bytes(b'finished')
    code, err = run('train_fcn', fcn_args(files['voc'], out), monkeypatch,
                    capsys)
    assert code == 2 and 'already holds a finished run' in error_line(err)
    assert (out / 'model.npz').read_bytes() == b'finished'
    code, err = run('train_fcn', fcn_args(files['voc'], out, '--force'),
                    monkeypatch, capsys)
    assert code == 0, err
    load_model(str(out / 'model.npz'))
    # --resume continues a finished run, here to more iterations.
    code, err = run('train_fcn', fcn_args(files['voc'], out, '--resume',
                                          '--iterations', 3),
                    monkeypatch, capsys)
    assert code == 0, err
    assert 'resuming from %s (iteration 2)' % os.path.join(
        str(out), 'snapshot_iter_2.npz') in err
    assert os.path.exists(str(out / 'snapshot_iter_3.npz'))


def test_out_is_a_file(files, tmp_path, monkeypatch, capsys):
    out = tmp_path / 'out'
    out.write_text('')
    code, err = run('train_fcn', fcn_args(files['voc'], out), monkeypatch,
                    capsys)
    assert code == 2 and 'is a file' in error_line(err)


# -- as real processes ----------------------------------------------------
@pytest.mark.parametrize('case', ['bad-jpeg-in-loop', 'bad-modelfile'])
def test_one_line_and_no_traceback_from_a_real_process(files, tmp_path,
                                                       case):
    root = voc_copy(files, tmp_path)
    if case == 'bad-jpeg-in-loop':
        named = _break(root, 'truncated-jpeg')
        argv = ['train_fcn.py'] + fcn_args(root, tmp_path / 'out')
    else:
        named = files['truncated']
        argv = ['train_classifier.py', '--dataset', 'voc', '--data-dir',
                root, '--modelfile', named, '--out', tmp_path / 'out']
    proc = subprocess.run([sys.executable] + [str(a) for a in argv],
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert 'Traceback' not in proc.stdout + proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith('error: ')
    assert named in lines[0]


# -- a diverging run ------------------------------------------------------
def test_gain_nan_loss_names_the_terms_and_keeps_the_last_snapshot(
        files, tmp_path, monkeypatch, capsys):
    from runtime.snapshots import read_snapshot
    out = tmp_path / 'gain'
    code, err = run('train_GAIN', [
        '--dataset', 'voc', '--data-dir', files['voc'], '--modelfile',
        files['good'], '--out', out, '--iterations', 4, '--batch-size', 2,
        '--val-split', '', '--snapshot-interval', 1, '--lr', 1e8],
        monkeypatch, capsys)
    line = error_line(err)
    assert code == 3
    assert line.startswith('error: iteration 2: non-finite loss main/am, '
                           'main/cl, main/loss, main/seg (')
    assert 'main/ext=0' in line and 'model.npz not written' in line
    snapshot = str(out / 'snapshot_iter_1.npz')
    assert 'last good snapshot: %s (iteration 1)' % snapshot in line
    read_snapshot(snapshot)                     # readable, finite weights
    assert sorted(os.listdir(str(out))) == [
        'config.json', 'ext_images.txt', 'snapshot_iter_1.npz', 'tensorboard']
