"""training/sampling.py: --positive-share, the data options resumed."""
import json
import os

import numpy as np
import pytest
from chainer import serializers
from chainer.iterators import SerialIterator

from datasets import get_dataset
from helpers import error_line, run_script, write_voc
from runtime.errors import UsageError
from training.sampling import PositiveShareOrder, positive_images


def batches_of(positive, share, batch_size, n_batches, seed=0):
    np.random.seed(seed)
    it = SerialIterator(np.arange(len(positive)), batch_size,
                        order_sampler=PositiveShareOrder(positive, share,
                                                         batch_size))
    return [np.array(it.next()) for _ in range(n_batches)]


@pytest.mark.parametrize('share,batch_size,per_batch', [
    (0.5, 4, [2]), (0.25, 4, [1]), (0.75, 3, [2, 3]), (0.25, 1, [0, 1]),
    (0.0, 4, [0]), (1.0, 4, [4])])
def test_every_batch_holds_the_share_of_positives(share, batch_size,
                                                  per_batch):
    """10 images, 3 of them positive, 12 epochs of ceil(10 / batch_size)
    batches: at every batch boundary j of an epoch its first j images hold
    share x j positives rounded half up (so a batch holds floor or ceil of
    share x batch_size, an epoch its share), and within an epoch each
    image of a kind is drawn q or q + 1 times, q the kind's draws over its
    images (each kind drawn without replacement)."""
    positive = np.zeros(10, bool)
    positive[[1, 4, 7]] = True
    per_epoch = -(-10 // batch_size)
    drawn = batches_of(positive, share, batch_size, 12 * per_epoch)
    assert all(len(b) == batch_size for b in drawn)
    counts = np.array([positive[b].sum() for b in drawn])
    assert set(counts) == set(per_batch)
    # The counts are arithmetic, not drawn: exact, at every boundary.
    boundaries = batch_size * np.arange(1, per_epoch + 1)
    expected = np.floor(share * boundaries + 0.5)
    for epoch in counts.reshape(12, per_epoch):
        np.testing.assert_array_equal(np.cumsum(epoch), expected)
    # Without replacement: whole permutations of a kind, then a subset.
    for e in range(12):
        every = np.bincount(np.concatenate(
            drawn[e * per_epoch:(e + 1) * per_epoch]), minlength=10)
        for kind in (positive, ~positive):
            q = every[kind].sum() // kind.sum()
            assert set(every[kind]) <= {q, q + 1}, (e, every)


def test_the_order_is_drawn_from_numpy_random():
    positive = np.arange(9) % 3 == 0
    first, again = (batches_of(positive, 0.5, 4, 10, seed=1)
                    for _ in range(2))
    other = batches_of(positive, 0.5, 4, 10, seed=2)
    assert all((a == b).all() for a, b in zip(first, again))
    assert any((a != b).any() for a, b in zip(first, other))


def test_a_share_that_needs_a_missing_kind_is_refused():
    with pytest.raises(UsageError, match='no negative image'):
        PositiveShareOrder(np.ones(5, bool), 0.5, 2)
    with pytest.raises(UsageError, match='no positive image'):
        PositiveShareOrder(np.zeros(5, bool), 0.1, 2)
    PositiveShareOrder(np.ones(5, bool), 1.0, 2)      # needs no negative


def test_iterator_state_resumes_the_same_batches(tmp_path):
    """The order is saved with the iterator and the RNG with the snapshot:
    an iterator restored mid-epoch continues with the same batches."""
    positive = np.arange(11) % 4 == 0
    sampler = PositiveShareOrder(positive, 0.5, 4)
    np.random.seed(0)
    it = SerialIterator(np.arange(11), 4, order_sampler=sampler)
    for _ in range(4):
        it.next()
    path = str(tmp_path / 'it.npz')
    serializers.save_npz(path, it)
    state = np.random.get_state()
    expected = [it.next() for _ in range(8)]
    np.random.seed(123)
    restored = SerialIterator(np.arange(11), 4, order_sampler=sampler)
    serializers.load_npz(path, restored)
    np.random.set_state(state)
    assert [restored.next() for _ in range(8)] == expected


def test_positive_images_from_labels_or_masks(weak_voc, tmp_path):
    root, written = weak_voc
    voc_dir = str(tmp_path / 'masks_only')
    write_voc(voc_dir, {'train': 4})
    joined = get_dataset('voc', root, 'train')
    assert positive_images(joined).tolist() == [
        bool(written[i][2].any()) for i in joined.ids]
    assert not positive_images(joined).all()
    masks_only = get_dataset('voc', voc_dir, 'train')
    assert not hasattr(masks_only, 'labels')
    assert positive_images(masks_only).tolist() == [
        bool(masks_only[i][2].any()) for i in range(len(masks_only))]


@pytest.fixture
def gain_args(weak_voc, files):
    root, _ = weak_voc
    return ['--dataset', 'voc', '--data-dir', root, '--modelfile',
            files['model'], '--batch-size', 2, '--attention-val-images', 2,
            '--val-split', '', '--no-tensorboard', '--snapshot-interval', 2,
            '--positive-share', 0.5, '--augment', 'autoaugment',
            '--am-on-negatives', '--seed', 4]


def test_gain_with_the_data_options_resumes_exactly(gain_args, tmp_path,
                                                    monkeypatch, capsys):
    """train_GAIN with --positive-share, --augment autoaugment and
    --am-on-negatives (on a split with negatives): 4 updates in one go
    give the weights of 2 updates resumed to 4; config.json records the
    options."""
    whole, parts = str(tmp_path / 'whole'), str(tmp_path / 'parts')
    for out, runs in ((whole, [[4]]), (parts, [[2], [4, '--resume']])):
        for n, *resume in runs:
            code, err = run_script('train_GAIN', gain_args + [
                '--iterations', n, '--out', out] + resume, monkeypatch,
                capsys)
            assert code == 0, err
    a, b = (np.load(os.path.join(d, 'model.npz')) for d in (whole, parts))
    arrays = [k for k in a.files if a[k].dtype != object]
    assert len(arrays) > 40
    assert all(np.array_equal(a[k], b[k]) for k in arrays)
    with open(os.path.join(whole, 'config.json')) as f:
        config = json.load(f)
    assert config['positive_share'] == 0.5
    assert config['augment'] == 'autoaugment'
    assert config['am_on_negatives'] is True


@pytest.mark.parametrize('flags,message', [
    (['--positive-share', '1.5'], '--positive-share must be in [0, 1]'),
    (['--augment', 'flip'], "invalid choice: 'flip'")])
def test_bad_data_options_are_one_line(gain_args, flags, message, tmp_path,
                                       monkeypatch, capsys):
    code, err = run_script('train_GAIN', gain_args + flags + [
        '--iterations', 1, '--out', str(tmp_path / 'bad')], monkeypatch,
        capsys)
    assert code == 2 and message in error_line(err)
