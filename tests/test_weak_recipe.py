"""The README's weak track on VOC 2012, run as written on a small VOC-format
directory with XML annotations: only the paths, the device, the lengths and
the number of GAIN_ext images change."""
import json
import os
import re
import shlex
import subprocess

import numpy as np
import pytest

from helpers import run_script, write_weak_voc
from models import FCN8s
from models.fcn8s import CLASSIFICATION_HEAD

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: What the test changes in each command: a CPU, two iterations, and as
#: many GAIN_ext images as the small directory has masks to spare.
SUBSTITUTIONS = [(r'--device 0\b', '--device -1'),
                 (r'--epochs [0-9.]+', '--iterations 2'),
                 (r'--ext-images 200\b', '--ext-images 2')]


def recipe_commands():
    """The logical lines of the README's code block that makes
    ``train_weak``, continuation lines joined, comments dropped."""
    with open(os.path.join(ROOT, 'README.md')) as f:
        blocks = re.findall(r'```sh\n(.*?)```', f.read(), re.S)
    block, = [b for b in blocks if 'train_weak' in b]
    lines = block.replace('\\\n', ' ').splitlines()
    return [line.strip() for line in lines
            if line.strip() and not line.strip().startswith('#')]


@pytest.fixture
def voc2012_like(tmp_path):
    """A VOC 2012-like directory: Main train/val/trainval lists with XML
    for every image, masks on some (Segmentation train/val lists), the
    segmentation val images also in seg11valid, and an fcn-format FCN8s
    file (no GAIN head) standing in for fcn8s_from_caffe.npz."""
    voc = str(tmp_path / 'VOC2012')
    write_weak_voc(voc, {'train': 3, 'val': 2}, {'train': 4, 'val': 3})
    seg = os.path.join(voc, 'ImageSets', 'Segmentation')
    with open(os.path.join(seg, 'val.txt')) as f:
        val = f.read()
    with open(os.path.join(seg, 'seg11valid.txt'), 'w') as f:
        f.write(val)
    np.random.seed(0)
    model = FCN8s(21, 1 / 16.)
    fcn8s = str(tmp_path / 'fcn8s_from_caffe.npz')
    with open(fcn8s, 'wb') as f:
        np.savez(f, **{n.lstrip('/'): p.array for n, p in model.namedparams()
                       if n.split('/')[1] not in CLASSIFICATION_HEAD})
    return voc, fcn8s


def test_readme_weak_track_runs_end_to_end(voc2012_like, tmp_path,
                                           monkeypatch, capsys):
    voc, fcn8s = voc2012_like
    env = dict(os.environ, VOC=voc, FCN8S=fcn8s)
    work = tmp_path / 'work'
    work.mkdir()
    monkeypatch.chdir(work)
    ran = []
    for line in recipe_commands():
        for pattern, replacement in SUBSTITUTIONS:
            line = re.sub(pattern, replacement, line)
        name, eq, value = line.partition('=')
        if eq and re.match(r'^[A-Z_0-9]+$', name):
            if name not in ('VOC', 'FCN8S'):          # the test's own
                env[name] = ' '.join(shlex.split(_expand(value, env)))
            continue
        words = shlex.split(_expand(line, env), comments=True)
        if words[0] != 'python':
            proc = subprocess.run(_expand(line, env), shell=True, env=env,
                                  capture_output=True, text=True)
            assert proc.returncode == 0, (line, proc.stderr)
            continue
        script = os.path.splitext(words[1])[0]
        code, err = run_script(script, words[2:], monkeypatch, capsys)
        assert code == 0, (line, err)
        ran.append(script)
    assert ran == ['train_classifier', 'train_GAIN', 'train_GAIN',
                   'make_pseudo_labels', 'train_fcn', 'evaluate']

    main = os.path.join(voc, 'ImageSets', 'Main', 'train_weak.txt')
    with open(main) as f:
        train_weak = f.read().split()
    assert train_weak == ['train_%03d' % i for i in range(3)] + [
        'train_img_%03d' % i for i in range(4)] + [
        'val_img_%03d' % i for i in range(3)]
    with open('runs/weak/gain_ext/ext_images.txt') as f:
        ext = f.read().split()
    assert len(ext) == 2 and set(ext) <= {'train_000', 'train_001',
                                          'train_002'}
    with open('runs/weak/gain/config.json') as f:
        assert json.load(f)['seg_weight'] == 0
    with open('runs/weak/pseudo_gain/pseudo_labels.json') as f:
        pseudo = json.load(f)
    assert (pseudo['images'], pseudo['images_with_mask']) == (10, 3)
    assert len(os.listdir('runs/weak/pseudo_gain/SegmentationClass')) == 10
    with open('runs/weak/eval/metrics.json') as f:
        evaluation = json.load(f)
    assert evaluation['split'] == 'val'
    assert evaluation['config']['images'] == 2
    assert evaluation['models']['fcn_gain']['mean_iu'] is not None


def _expand(text, env):
    """``$NAME`` of ``env`` in ``text`` (as the shell would, unquoted)."""
    return re.sub(r'\$([A-Z_][A-Z_0-9]*)', lambda m: env[m.group(1)], text)
