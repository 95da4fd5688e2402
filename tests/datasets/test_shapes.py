"""datasets/shapes.py: the synthetic biased ``shapes`` dataset."""
import json
import os
import threading

import numpy as np
import pytest
from PIL import Image

from datasets import shapes
from helpers import ROOT, read_tree


SIZE = 96


N = dict(n_train=120, n_val=80, n_tune=300, n_test=300)


N_FG = len(shapes.CLASS_NAMES) - 1


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('shapes'))
    shapes.generate(root, seed=0, size=SIZE, **N)
    return root


def load(root, id_):
    """(image (H, W, 3) uint8 array, mode, mask PIL image) of one id."""
    jpg = Image.open(os.path.join(root, 'JPEGImages', id_ + '.jpg'))
    png = Image.open(os.path.join(root, 'SegmentationClass', id_ + '.png'))
    return np.asarray(jpg), jpg.mode, png


def split_ids(root, split):
    with open(os.path.join(root, 'ImageSets', 'Segmentation',
                           split + '.txt')) as f:
        return f.read().split()


def near(m, r=1):
    """(H, W) bool: m (H, W) bool is true within r pixels (square)."""
    p = np.pad(m, r)
    h, w = m.shape
    k = 2 * r + 1
    return np.any([p[y:y + h, x:x + w] for y in range(k) for x in range(k)],
                  axis=0)


SMALL = dict(size=SIZE, n_train=6, n_val=3, n_tune=4, n_test=6)


def test_same_seed_byte_identical_other_seed_differs(tmp_path):
    a, b, c = (str(tmp_path / n) for n in 'abc')
    shapes.generate(a, seed=3, **SMALL)
    shapes.generate(b, seed=3, **SMALL)
    shapes.generate(c, seed=4, **SMALL)
    fa, fb, fc = read_tree(a), read_tree(b), read_tree(c)
    # jpg, png and xml per image, two lists per split, class_names.txt,
    # meta.json
    assert len(fa) == 3 * (6 + 3 + 4 + 6) + 2 * 4 + 2
    assert fa == fb
    assert sorted(fa) == sorted(fc)
    jpgs = [k for k in fa if k.endswith('.jpg')]
    assert all(fa[k] != fc[k] for k in jpgs)


def test_image_does_not_depend_on_split_sizes(tmp_path):
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    shapes.generate(a, seed=3, **SMALL)
    shapes.generate(b, seed=3, size=SIZE, n_train=2, n_val=3, n_tune=0,
                    n_test=0)
    fa, fb = read_tree(a), read_tree(b)
    for k in fb:
        if k.endswith(('.jpg', '.png', '.xml')):
            assert fa[k] == fb[k], k
    assert split_ids(b, 'train') == ['train_00000', 'train_00001']
    assert split_ids(b, 'test') == []


def test_masks_and_labels_consistent(root):
    with open(os.path.join(root, 'meta.json')) as f:
        meta = json.load(f)
    for id_, info in meta['images'].items():
        img, mode, png = load(root, id_)
        assert mode == 'RGB' and img.shape == (SIZE, SIZE, 3)
        assert png.mode == 'P' and png.size == (SIZE, SIZE)
        # standard VOC palette: background, aeroplane, ..., 255 = ignore
        pal = png.getpalette()
        assert pal[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
        assert pal[3 * 255:3 * 256] == [224, 224, 192]
        mask = np.asarray(png)
        values = set(np.unique(mask).tolist())
        assert values <= set(range(N_FG + 1)) | {255}
        present = sorted(values - {0, 255})
        assert 1 <= len(present) <= 3
        assert [shapes.CLASS_NAMES[c] for c in present] == info['classes']
        assert 255 in values and 0 in values
        # the ignore band is thin and separates objects from background
        fg = (mask > 0) & (mask < 255)
        assert not (fg & near(mask == 0)).any()
        ignore = mask == 255
        assert near(~ignore, 2)[ignore].all()   # at most ~3 px wide
        # one object per class, 10-40 % of the side (6 x 6 CAM can see it)
        for c in present:
            ys, xs = np.nonzero(mask == c)
            extent = max(np.ptp(ys), np.ptp(xs)) + 3
            assert 0.10 * SIZE <= extent <= 0.40 * SIZE, (id_, c, extent)


def test_cues_are_background_in_mask(root):
    """Where a cue is drawn, its uncovered pixels show its colour and are
    labelled 0; where it is absent its colour is not there."""
    with open(os.path.join(root, 'meta.json')) as f:
        images = json.load(f)['images']
    drawn, checked = 0, 0
    for id_ in split_ids(root, 'train')[:60] + split_ids(root, 'test')[:60]:
        img, _, png = load(root, id_)
        mask = np.asarray(png)
        for cue in shapes.CUE_NAMES:
            core = shapes.cue_core(cue, SIZE)
            assert core.sum() >= 0.05 * SIZE * SIZE
            background = core & (mask == 0)
            drawn += cue in images[id_]['cues']
            if background.sum() < 20:   # hidden by objects
                continue
            dist = np.linalg.norm(img[background].mean(0) -
                                  shapes.CUE_COLOURS[cue])
            if cue in images[id_]['cues']:
                assert dist < 35, (id_, cue, dist)
                checked += 1
            else:
                assert dist > 55, (id_, cue, dist)
    assert drawn > 50 and checked >= 0.9 * drawn


def test_split_files_list_generated_ids(root):
    with open(os.path.join(root, 'meta.json')) as f:
        meta = json.load(f)
    ids = {s: split_ids(root, s) for s in shapes.SPLITS}
    for s in shapes.SPLITS:
        assert len(ids[s]) == len(set(ids[s])) == N['n_' + s]
        assert all(meta['images'][i]['split'] == s for i in ids[s])
    all_ids = ids['train'] + ids['val'] + ids['tune'] + ids['test']
    assert len(set(all_ids)) == len(all_ids)
    assert set(all_ids) == set(meta['images'])
    for d, ext in (('JPEGImages', '.jpg'), ('SegmentationClass', '.png'),
                   ('Annotations', '.xml')):
        names = os.listdir(os.path.join(root, d))
        assert sorted(names) == sorted(i + ext for i in all_ids)
    assert meta['params'] == dict(seed=0, size=SIZE, bias=0.9, **N)
    assert meta['version'] == shapes.VERSION
    assert tuple(meta['class_names']) == shapes.CLASS_NAMES
    assert tuple(meta['cue_names']) == shapes.CUE_NAMES


def count(root, split):
    """Independent count: (has_class, has_cue) (n, 5) bool arrays."""
    with open(os.path.join(root, 'meta.json')) as f:
        images = json.load(f)['images']
    ids = split_ids(root, split)
    has_class = np.zeros((len(ids), N_FG), bool)
    has_cue = np.zeros((len(ids), N_FG), bool)
    for i, id_ in enumerate(ids):
        mask = np.asarray(load(root, id_)[2])
        for c in range(N_FG):
            has_class[i, c] = (mask == c + 1).any()
            has_cue[i, c] = shapes.CUE_NAMES[c] in images[id_]['cues']
    return has_class, has_cue


@pytest.mark.parametrize('split', shapes.SPLITS)
def test_bias_statistics(root, split):
    stats = shapes.bias_statistics(root, split)
    has_class, has_cue = count(root, split)
    assert list(stats) == list(shapes.CLASS_NAMES[1:])
    for c, name in enumerate(shapes.CLASS_NAMES[1:]):
        s = stats[name]
        cls, cue = has_class[:, c], has_cue[:, c]
        assert s['cue'] == shapes.CUE_NAMES[c]
        assert s['n_class'] == cls.sum() and s['n_not_class'] == (~cls).sum()
        assert s['n_cue_and_class'] == (cls & cue).sum()
        assert s['p_cue_given_class'] == pytest.approx(cue[cls].mean())
        assert s['p_cue_given_not_class'] == pytest.approx(cue[~cls].mean())
        assert s['n_class'] >= 10 and s['n_not_class'] >= 10
        if split in shapes.UNBIASED:
            assert abs(s['p_cue_given_class'] -
                       s['p_cue_given_not_class']) < 0.2, (name, s)
        else:
            assert s['p_cue_given_class'] > 0.75, (name, s)
            assert s['p_cue_given_not_class'] < 0.2, (name, s)


def test_tune_and_test_share_no_image_and_are_both_unbiased(root):
    """Settings are chosen on tune and reported on test: no image of one
    is in the other, and in both each cue is as likely without its class
    as with it."""
    def pixels(split):
        return {load(root, i)[0].tobytes() for i in split_ids(root, split)}

    tune, test = pixels('tune'), pixels('test')
    assert len(tune) == N['n_tune'] and len(test) == N['n_test']
    assert not tune & test
    assert not set(split_ids(root, 'tune')) & set(split_ids(root, 'test'))
    for split in ('tune', 'test'):
        for name, s in shapes.bias_statistics(root, split).items():
            assert abs(s['p_cue_given_class'] -
                       s['p_cue_given_not_class']) < 0.15, (split, name, s)
    # the training split's bias, for contrast
    for s in shapes.bias_statistics(root, 'train').values():
        assert s['p_cue_given_class'] - s['p_cue_given_not_class'] > 0.6


def test_annotations_name_each_object_with_its_box(root):
    """Annotations/<id>.xml (the classification layout) lists the classes
    of the mask, each with the box of its pixels, 1-based as VOC's."""
    from xml.etree import ElementTree
    for id_ in split_ids(root, 'train')[:40]:
        mask = np.asarray(load(root, id_)[2])
        tree = ElementTree.parse(os.path.join(root, 'Annotations',
                                              id_ + '.xml')).getroot()
        objects = tree.findall('object')
        names = sorted(o.find('name').text for o in objects)
        present = sorted(shapes.CLASS_NAMES[c] for c in np.unique(mask)
                         if 0 < c < 255)
        assert names == present
        for o in objects:
            c = shapes.CLASS_NAMES.index(o.find('name').text)
            ys, xs = np.nonzero(mask == c)
            box = [int(o.find('bndbox/' + k).text) - 1
                   for k in ('xmin', 'ymin', 'xmax', 'ymax')]
            # the box of the pixels covered at least half: it holds the
            # class's pixels and lies within them and their ignore band
            assert box[0] <= xs.min() and xs.max() <= box[2]
            assert box[1] <= ys.min() and ys.max() <= box[3]
            band = (mask == c) | ((mask == 255) & near(mask == c, 3))
            by, bx = np.nonzero(band)
            assert bx.min() <= box[0] and box[2] <= bx.max()
            assert by.min() <= box[1] and box[3] <= by.max()
            assert o.find('difficult').text == '0'
    with open(os.path.join(root, 'ImageSets', 'Main', 'train.txt')) as f:
        assert f.read().split() == split_ids(root, 'train')


def test_test_cues_have_train_marginal(root):
    train = shapes.bias_statistics(root, 'train')
    test = shapes.bias_statistics(root, 'test')
    for name in shapes.CLASS_NAMES[1:]:
        assert abs(train[name]['p_cue'] - test[name]['p_cue']) < 0.15


def test_no_bias_when_bias_equals_marginal(tmp_path):
    """bias=0.05 (= rate of absent cues): the cue carries no information."""
    root = str(tmp_path / 'u')
    shapes.generate(root, seed=1, size=SIZE, n_train=200, n_val=0,
                    n_tune=0, n_test=0, bias=shapes.P_CUE_ABSENT)
    for s in shapes.bias_statistics(root, 'train').values():
        assert s['p_cue_given_class'] < 0.2


TINY = dict(size=SIZE, n_train=4, n_val=2, n_tune=2, n_test=2)


def mtimes(root):
    return {d: os.stat(os.path.join(d, n)).st_mtime_ns
            for d, _, ns in os.walk(root) for n in ns}


def test_ensure_reuses_cache_and_regenerates_on_change(tmp_path, monkeypatch):
    root = str(tmp_path / 'cache')
    assert shapes.ensure(root, seed=2, **TINY) == root
    before = mtimes(root)
    meta_time = os.stat(os.path.join(root, 'meta.json')).st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError('regenerated a valid cache')
    with monkeypatch.context() as m:
        m.setattr(shapes, 'generate', fail)
        assert shapes.ensure(root, seed=2, **TINY) == root
    assert mtimes(root) == before
    assert os.stat(os.path.join(root, 'meta.json')).st_mtime_ns == meta_time

    shapes.ensure(root, seed=2, **dict(TINY, n_train=5))
    assert len(split_ids(root, 'train')) == 5
    with open(os.path.join(root, 'meta.json')) as f:
        assert json.load(f)['params']['n_train'] == 5
    shapes.ensure(root, seed=2, **dict(TINY, n_train=5, bias=0.5))
    with open(os.path.join(root, 'meta.json')) as f:
        assert json.load(f)['params']['bias'] == 0.5
    # no temporaries left; the lock of the generation stays
    assert sorted(os.listdir(str(tmp_path))) == ['.cache.lock', 'cache']


def test_a_second_ensure_waits_for_the_first_and_reuses_its_dataset(
        tmp_path, monkeypatch):
    """While one thread generates, a second ensure() of the same dataset
    blocks on the lock (an event proves it reached the lock) and then
    returns the first one's dataset without generating it again."""
    root = str(tmp_path / 'cache')
    generating, release = threading.Event(), threading.Event()
    tried = threading.Event()
    calls = []
    generate = shapes.generate

    def slow_generate(*args, **kwargs):
        calls.append(threading.current_thread().name)
        generating.set()
        assert release.wait(60)
        return generate(*args, **kwargs)

    class SpyLock(shapes.filelock.FileLock):
        def acquire(self, *args, **kwargs):
            if threading.current_thread().name == 'second':
                tried.set()
            return super().acquire(*args, **kwargs)

    monkeypatch.setattr(shapes, 'generate', slow_generate)
    monkeypatch.setattr(shapes.filelock, 'FileLock', SpyLock)
    results = {}

    def ensure():
        results[threading.current_thread().name] = shapes.ensure(
            root, seed=2, **TINY)
    first = threading.Thread(target=ensure, name='first', daemon=True)
    second = threading.Thread(target=ensure, name='second', daemon=True)
    first.start()
    assert generating.wait(60)
    second.start()
    assert tried.wait(60)
    second.join(0.5)
    assert second.is_alive() and 'second' not in results
    release.set()
    first.join(60)
    second.join(60)
    assert results == dict(first=root, second=root)
    assert calls == ['first']


def test_ensure_replaces_half_written_directory(tmp_path):
    root = tmp_path / 'cache'
    (root / 'JPEGImages').mkdir(parents=True)
    (root / 'JPEGImages' / 'junk.jpg').write_bytes(b'')
    shapes.ensure(str(root), seed=0, **TINY)
    assert not (root / 'JPEGImages' / 'junk.jpg').exists()
    assert (root / 'meta.json').exists()
    ref = str(tmp_path / 'ref')
    shapes.generate(ref, seed=0, **TINY)
    assert read_tree(str(root)) == read_tree(ref)


def test_ensure_refuses_to_replace_foreign_directory(tmp_path):
    (tmp_path / 'notes.txt').write_text('keep me')
    with pytest.raises(FileExistsError):
        shapes.ensure(str(tmp_path), seed=0, **TINY)
    assert (tmp_path / 'notes.txt').read_text() == 'keep me'
    assert os.listdir(str(tmp_path)) == ['notes.txt']


def test_ensure_default_root(monkeypatch):
    calls = []
    monkeypatch.setattr(shapes, '_is_current', lambda r, p: calls.append(r)
                        or True)
    repo = ROOT
    assert shapes.ensure(seed=7) == os.path.join(repo, 'data',
                                                 'shapes-seed7')
    assert calls


def test_cli_prints_statistics(tmp_path, capsys):
    out = str(tmp_path / 'cli')
    shapes.main(['--out', out, '--seed', '1', '--n-train', '20',
                 '--n-val', '5', '--n-tune', '5', '--n-test', '5'])
    text = capsys.readouterr().out
    assert os.path.exists(os.path.join(out, 'meta.json'))
    for word in shapes.SPLITS + shapes.CUE_NAMES + shapes.CLASS_NAMES[1:]:
        assert word in text


def test_ensure_removes_the_leftovers_of_an_interrupted_run(tmp_path):
    """A generation killed half way leaves ``.<name>.tmp-*`` and
    ``.<name>.old-*``; the next one removes them (one generation runs at a
    time, under the lock .<name>.lock beside it), and nothing else."""
    stale = [tmp_path / '.cache.tmp-abc123' / 'JPEGImages' / 'x.jpg',
             tmp_path / '.cache.old-def456' / 'cache' / 'meta.json']
    kept = tmp_path / '.cache2.tmp-zzz' / 'x.jpg'
    for path in stale + [kept]:
        path.parent.mkdir(parents=True)
        path.write_bytes(b'x' * 100)
    shapes.ensure(str(tmp_path / 'cache'), seed=0, **TINY)
    assert sorted(os.listdir(str(tmp_path))) == ['.cache.lock',
                                                 '.cache2.tmp-zzz', 'cache']
    assert kept.read_bytes() == b'x' * 100
