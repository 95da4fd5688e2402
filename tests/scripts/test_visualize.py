"""visualize.py: per-image PNGs, overview, --save-cams, --images, errors."""
import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest

import visualize
from helpers import ROOT, write_voc
from models import FCN8s
from runtime import cli
from models.io import save_model
from visualizations import image_figure


def save_thin_models(directory, names, n_class=21):
    paths = []
    for seed, name in enumerate(names):
        np.random.seed(seed)
        path = os.path.join(directory, name, 'model.npz')
        model = FCN8s(n_class, width=1 / 16.)
        model.head_trained_by = ['a test fixture']
        save_model(path, model)
        paths.append(path)
    return paths


@pytest.fixture
def setup(tmp_path):
    voc = str(tmp_path / 'VOC')
    written = write_voc(voc, {'val': 3})
    return voc, written, save_thin_models(str(tmp_path), ['a', 'b'])


def run_main(argv, monkeypatch):
    monkeypatch.setattr(sys, 'argv', ['visualize.py'] + argv)
    cli.run(visualize.main)


def gt_classes(lbl):
    return sorted(set(np.unique(lbl).tolist()) - {0, 255})


def assert_png(path, min_width=200):
    with PIL.Image.open(path) as im:
        im.load()
        assert im.format == 'PNG' and im.size[0] >= min_width


def test_dataset_images_overview_and_cams(setup, tmp_path, monkeypatch):
    voc, written, (a, b) = setup
    out = str(tmp_path / 'vis')
    run_main(['--dataset', 'voc', '--data-dir', voc, '--split', 'val',
              '--pretrained', a, '--trained', b, '--out', out, '--num', '2',
              '--save-cams'], monkeypatch)
    assert sorted(os.listdir(out)) == ['cams', 'config.json', 'overview.png',
                                       'val_000.png', 'val_001.png']
    for name in ('val_000.png', 'val_001.png', 'overview.png'):
        assert_png(os.path.join(out, name))
    for image_id in ('val_000', 'val_001'):
        img, lbl = written[image_id]
        with np.load(os.path.join(out, 'cams', image_id + '.npz')) as z:
            classes = gt_classes(lbl)
            assert z['classes'].tolist() == classes
            for key in ('before', 'after'):
                assert z[key].shape == (len(classes),) + lbl.shape
                assert z[key].dtype == np.float32
                assert z[key].min() >= 0 and z[key].max() <= 1
            assert z['scores_after'].shape == (len(classes),)
            assert ((z['scores_before'] >= 0) &
                    (z['scores_before'] <= 1)).all()
            assert not np.allclose(z['before'], z['after'])


def test_all_and_classes_filter(setup, tmp_path, monkeypatch):
    voc, written, (a, b) = setup
    from datasets import VOC_CLASS_NAMES
    # A class present in some but not all images.
    counts = {}
    for lbl in (written[i][1] for i in sorted(written)):
        for c in gt_classes(lbl):
            counts[c] = counts.get(c, 0) + 1
    c = [c for c, n in counts.items() if n < 3][0]
    out = str(tmp_path / 'vis')
    run_main(['--dataset', 'voc', '--data-dir', voc, '--split', 'val',
              '--pretrained', a, '--trained', b, '--out', out, '--all',
              '--classes', VOC_CLASS_NAMES[c], '--save-cams'], monkeypatch)
    expected = sorted(i for i in written if c in gt_classes(written[i][1]))
    assert sorted(f[:-4] for f in os.listdir(os.path.join(out, 'cams'))) \
        == expected
    for i in expected:
        with np.load(os.path.join(out, 'cams', i + '.npz')) as z:
            assert z['classes'].tolist() == [c]
            assert z['class_names'].tolist() == [VOC_CLASS_NAMES[c]]


def test_folder_of_own_images_scored_classes(setup, tmp_path, monkeypatch,
                                             capsys):
    """Of a folder of images, the classes the trained model scores above
    50 %, at most --top, at least its top one; what is not an image is
    named in one warning."""
    voc, written, (a, b) = setup
    folder = tmp_path / 'mine'
    folder.mkdir()
    PIL.Image.fromarray(written['val_000'][0]).save(str(folder / 'x.jpg'))
    PIL.Image.fromarray(written['val_001'][0][:32, :36]).convert('L').save(
        str(folder / 'y.png'))
    for name in ('notes.txt', 'a.gif', 'b.md', 'c.txt'):
        (folder / name).write_text('not an image')
    # the trained model: b with biases that put only two classes of y.png
    # above 50 %
    import chainer
    from datasets import preprocess
    from models.io import load_model
    model, _ = load_model(b)
    img = np.asarray(PIL.Image.open(str(folder / 'y.png')).convert('RGB'))
    with chainer.using_config('train', False):
        logits = np.sort(model.classify(preprocess(img)[None]).array[0])
    model.score_cl.b.array -= (logits[-2] + logits[-3]) / 2
    b = str(tmp_path / 'two' / 'model.npz')
    save_model(b, model)
    out = str(tmp_path / 'vis')
    run_main(['--dataset', 'voc', '--images', str(folder), '--pretrained',
              a, '--trained', b, '--out', out, '--top', '3', '--save-cams'],
             monkeypatch)
    assert [l for l in capsys.readouterr().err.splitlines() if 'warning' in
            l] == ['warning: --images %s: skipping what is not a jpg or png '
                   'file (4): a.gif, b.md, c.txt, ...' % folder]
    assert_png(os.path.join(out, 'x.png'))
    assert_png(os.path.join(out, 'y.png'))
    assert_png(os.path.join(out, 'overview.png'))
    # of the 3 classes the trained model scores highest on the grey image
    model, _ = load_model(b)
    with chainer.using_config('train', False):
        logits = model.classify(preprocess(img)[None]).array[0]
    top = [c for c in np.argsort(-logits)[:3] if logits[c] > 0] or [
        np.argmax(logits)]
    top = sorted(c + 1 for c in top)
    assert len(top) == 2     # the third scores below 50 %
    with np.load(os.path.join(out, 'cams', 'y.npz')) as z:
        assert z['before'].shape == z['after'].shape == (len(top), 32, 36)
        assert z['classes'].tolist() == top
        expected = 1 / (1 + np.exp(-logits[np.array(top) - 1]))
        np.testing.assert_allclose(z['scores_after'], expected, rtol=1e-5)


def test_missing_pretrained_is_one_line_error(setup, tmp_path):
    voc, _, (_, b) = setup
    proc = subprocess.run(
        [sys.executable, 'visualize.py', '--dataset', 'voc', '--data-dir',
         voc, '--split', 'val', '--pretrained', str(tmp_path / 'no.npz'),
         '--trained', b, '--out', str(tmp_path / 'vis')],
        cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stderr
    assert proc.stderr.count('\n') == 1
    assert proc.stderr.startswith('error: ') and 'no.npz' in proc.stderr


def test_unknown_class_and_empty_folder_are_usage_errors(setup, tmp_path,
                                                         monkeypatch,
                                                         capsys):
    voc, _, (a, b) = setup
    for extra in (['--data-dir', voc, '--split', 'val', '--classes', 'kit'],
                  ['--images', str(tmp_path)]):
        with pytest.raises(SystemExit) as e:
            run_main(['--dataset', 'voc', '--pretrained', a, '--trained', b,
                      '--out', str(tmp_path / 'vis')] + extra, monkeypatch)
        assert e.value.code == 2
        assert capsys.readouterr().err.startswith('error: ')


def test_unreadable_own_images_are_skipped_and_counted(setup, tmp_path,
                                                       monkeypatch, capsys):
    voc, written, (a, b) = setup
    folder = tmp_path / 'mine'
    folder.mkdir()
    PIL.Image.fromarray(written['val_000'][0]).save(str(folder / 'a.jpg'))
    (folder / 'b.jpg').write_bytes(b'not a jpeg')
    (folder / 'c.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    out = str(tmp_path / 'vis')
    args = ['--dataset', 'voc', '--pretrained', a, '--trained', b,
            '--out', out, '--images', str(folder)]
    run_main(args, monkeypatch)
    stdout, err = capsys.readouterr()
    assert sorted(os.listdir(out)) == ['a.png', 'config.json',
                                       'overview.png']
    assert 'wrote 1 images' in stdout
    assert 'skipped 2 unreadable files' in stdout
    warnings = [l for l in err.splitlines() if l.startswith('warning: ')]
    assert len(warnings) == 2
    assert 'b.jpg' in warnings[0] and 'c.png' in warnings[1]
    assert 'Traceback' not in err

    (folder / 'a.jpg').write_bytes(b'')
    with pytest.raises(SystemExit) as e:
        run_main(args, monkeypatch)
    assert e.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith('error: --images %s: none of its 3' % folder)


def test_ground_truth_and_prediction_panels_have_legends():
    names = ('background', 'disc', 'square', 'ring')
    lbl = np.zeros((8, 8), np.int32)
    lbl[:2], lbl[2], lbl[5:] = 1, -1, 3
    pred = np.zeros((8, 8), np.int64)
    pred[4:] = 2
    cam = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 8, 8)
    result = dict(classes=np.array([1]), cams=[cam, cam * 0],
                  scores=[np.array([0.7]), np.array([0.2])], pred=pred)
    axes = image_figure('x', np.zeros((8, 8, 3), np.uint8), lbl, result,
                        names).axes

    def legend(ax):
        return [t.get_text() for t in ax.get_legend().get_texts()]
    gt = [ax for ax in axes if ax.get_title() == 'ground truth'][0]
    assert legend(gt) == ['background', 'disc', 'ring', 'ignore']
    seg = [ax for ax in axes if ax.get_title() == 'segmentation (after)'][0]
    assert legend(seg) == ['background', 'square']
    after = [ax for ax in axes if ax.get_title().startswith('after')][0]
    assert [t.get_text() for t in after.texts] == ['all-zero CAM']


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
    assert ('warning: %s: a FIFO, not a regular file; skipped'
            % (folder / 'fifo.jpg')) in done.stderr
    assert 'skipped 1 unreadable files' in done.stdout
    assert (tmp_path / 'vis' / 'a.png').is_file()


def test_pages_never_share_a_name(setup, tmp_path, monkeypatch, capsys):
    """Images named ``overview`` and ``overview_image`` both went to
    overview_image.png, one overwriting the other, and both were counted;
    every page now has a name of its own, and the overview keeps its."""
    voc, written, (a, b) = setup
    folder = tmp_path / 'mine'
    folder.mkdir()
    for k, name in enumerate(['overview', 'overview_image', 'overview_2']):
        PIL.Image.fromarray(written['val_00%d' % k][0]).save(
            str(folder / (name + '.jpg')))
    out = str(tmp_path / 'vis')
    run_main(['--dataset', 'voc', '--pretrained', a, '--trained', b,
              '--out', out, '--images', str(folder)], monkeypatch)
    assert 'wrote 3 images and overview.png' in capsys.readouterr()[0]
    assert sorted(os.listdir(out)) == [
        'config.json', 'overview.png', 'overview_2.png', 'overview_2_2.png',
        'overview_image.png']
    for name in os.listdir(out):
        if name != 'config.json':
            assert_png(os.path.join(out, name))
