"""datasets/transforms.py: the training view of a joined split."""
import chainer
import numpy as np
import pytest
from chainer.dataset import concat_examples

from datasets import PixelSupervisionFlag, get_dataset, training_data
from helpers import ONLY
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
