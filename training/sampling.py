"""Batches with a fixed share of positive images (``--positive-share``).

An image is *positive* when it has a foreground class, *negative* when it
has none (a background-only image, a negative of an image list).
"""
import numpy as np
from chainer.iterators import OrderSampler
from tqdm import tqdm

from runtime.errors import UsageError


def positive_images(dataset):
    """``(N,)`` bool: which images of a raw ``(img, label_map, labels)``
    dataset have a foreground class; from its ``labels`` attribute where it
    has one (image-level datasets), else read from every example (its
    mask)."""
    labels = getattr(dataset, 'labels', None)
    if labels is not None:
        return np.asarray(labels).any(axis=1)
    found = np.zeros(len(dataset), bool)
    with tqdm(total=len(dataset), desc='labels', unit='image') as shown:
        for i in range(len(dataset)):
            found[i] = np.asarray(dataset[i][2]).any()
            shown.update()
    return found


class PositiveShareOrder(OrderSampler):
    """Order sampler of a ``SerialIterator`` whose every batch holds a fixed
    share of positive images.

    An epoch is ``ceil(N / batch_size)`` batches. Over it, the first ``j``
    examples hold ``round(share * j)`` positives at every batch boundary
    ``j``, so each batch holds ``floor`` or ``ceil`` of ``share x
    batch_size`` positives and the epoch ``share`` of them (with batch 1 and
    share 0.25, every fourth batch is a positive image). Positives and
    negatives are each drawn without replacement, the list of the kind
    repeated whole (in a fresh random order) as often as the epoch needs it
    and the remainder drawn at random: the rarer kind is repeated, the more
    common one subsampled. Each epoch's order is drawn from ``numpy.random``
    (seeded by the scripts, saved in the snapshots) and saved by the
    iterator: a resumed run draws the same batches.

    Args:
        positive: ``(N,)`` bool, which examples are positive.
        share: the share of positive images per batch, in [0, 1].
        batch_size: images per batch.
    """

    def __init__(self, positive, share, batch_size):
        self.positive = np.flatnonzero(positive)
        self.negative = np.flatnonzero(~np.asarray(positive, bool))
        self.share, self.batch_size = float(share), int(batch_size)
        self.length = -(-len(positive) // self.batch_size) * self.batch_size
        for kind, indices, needed in (
                ('positive', self.positive, share > 0),
                ('negative', self.negative, share < 1)):
            if needed and not len(indices):
                raise UsageError('--positive-share %g: the training split has '
                                 'no %s image (one %s a foreground class)'
                                 % (share, kind, 'with' if kind == 'positive'
                                    else 'without'))

    def __call__(self, current_order, current_position):
        starts = np.arange(0, self.length + 1, self.batch_size)
        counts = np.diff(np.floor(self.share * starts + 0.5).astype(int))
        positives = iter(_draw(self.positive, counts.sum()))
        negatives = iter(_draw(self.negative, self.length - counts.sum()))
        order = [next(positives) if k < n else next(negatives)
                 for n in counts for k in range(self.batch_size)]
        return np.array(order, dtype=np.intp)


def _draw(indices, n):
    """``n`` of ``indices``: whole permutations, then a random subset."""
    if n == 0:
        return np.zeros(0, np.intp)
    parts = [np.random.permutation(indices) for _ in range(n // len(indices))]
    parts.append(np.random.permutation(indices)[:n % len(indices)])
    return np.concatenate(parts)
