"""datasets/transforms.py: the training view of a joined split, and
images of different sizes padded into one batch."""
import os

import chainer
import numpy as np
import pytest
from chainer.dataset import concat_examples

from datasets import (PixelSupervisionFlag, get_dataset, pad_examples,
                      training_data)
from helpers import ONLY, SIZES, run_script, write_example, write_voc
from models import FCN8s
from train_GAIN import pick_ext_images
from training.gain_loss import GAINLoss


def test_batches_from_a_joined_split_mix_both_kinds(weak_voc):
    """A batch of the training view of a joined split stacks images with
    and without a mask; its L_seg is that of its masked images alone."""
    root, _ = weak_voc
    train = get_dataset('voc', root, 'train')
    ext = pick_ext_images(train.has_mask, 2, seed=0)
    examples = PixelSupervisionFlag(training_data(train), ext)
    batch = concat_examples([examples[i] for i in (0, 3, 1, 4)])
    x, lbl, labels, supervised = batch
    assert x.shape == (4, 3, 40, 48) and labels.shape == (4, 20)
    assert [(m >= 0).any() for m in lbl] == [True, False, True, False]
    assert not supervised[[1, 3]].any()
    np.random.seed(0)
    model = FCN8s(21, 1 / 16.)
    loss = GAINLoss(model, weights=dict(ONLY, seg=1.0))
    with chainer.using_config('train', False):
        mixed = float(loss(*batch).array)
        alone = float(loss(*(a[[0, 2]] for a in batch)).array)
    assert mixed == pytest.approx(alone, rel=1e-6) and mixed > 0


def test_pad_examples_pads_with_the_mean_and_the_ignore_label():
    a = (np.ones((3, 4, 5), np.float32), np.zeros((4, 5), np.int32),
         np.array([1, 0], np.int32), True)
    b = (2 * np.ones((3, 6, 3), np.float32), np.ones((6, 3), np.int32),
         np.array([0, 1], np.int32), False)
    x, lbl, labels, supervised, sizes = pad_examples([a, b])
    assert x.shape == (2, 3, 6, 5) and lbl.shape == (2, 6, 5)
    assert sizes.tolist() == [[4, 5], [6, 3]]
    assert (x[0, :, :4] == 1).all() and (x[0, :, 4:] == 0).all()
    assert (x[1, :, :, :3] == 2).all() and (x[1, :, :, 3:] == 0).all()
    assert (lbl[0, :4] == 0).all() and (lbl[0, 4:] == -1).all()
    assert (lbl[1, :, :3] == 1).all() and (lbl[1, :, 3:] == -1).all()
    assert labels.tolist() == [[1, 0], [0, 1]]
    assert supervised.tolist() == [True, False]
    same = pad_examples([a, a])
    assert same[-1] is None and same[0].shape == (2, 3, 4, 5)


@pytest.fixture
def mixed_voc(tmp_path):
    """A VOC directory whose train and val images have three sizes."""
    root = str(tmp_path / 'VOC')
    written = write_voc(root, {'train': 6, 'val': 3})
    rng = np.random.RandomState(5)
    for k, image_id in enumerate(sorted(written)):
        h, w = SIZES[k % 3]
        img = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
        lbl = np.zeros((h, w), np.uint8)
        lbl[5:20, 5:25] = 1 + k % 3
        write_example(root, image_id, img, lbl)
    return root


@pytest.mark.parametrize('script', ['train_GAIN', 'train_fcn',
                                    'train_classifier'])
def test_training_scripts_take_batches_of_mixed_sizes(
        mixed_voc, files, tmp_path, monkeypatch, capsys, script):
    """Each training script trains and validates on batches that mix image
    sizes (they were refused, and VOC ran at --batch-size 1)."""
    train = get_dataset('voc', mixed_voc, 'train')
    shapes = {training_data(train)[i][0].shape for i in range(len(train))}
    assert len(shapes) == 3
    args = ['--dataset', 'voc', '--data-dir', mixed_voc, '--iterations', 2,
            '--batch-size', 3, '--val-interval', 1, '--out',
            str(tmp_path / script), '--no-tensorboard']
    if script != 'train_fcn':
        args += ['--modelfile', files['model']]
    if script == 'train_GAIN':
        args += ['--attention-val-images', 3, '--ext-weight', 1,
                 '--ext-images', 2]
    code, err = run_script(script, args, monkeypatch, capsys)
    assert code == 0, err
    assert os.path.isfile(str(tmp_path / script / 'model.npz'))
