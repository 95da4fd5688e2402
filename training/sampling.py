"""Batches with a fixed share of positive images (with a foreground
class), ``--positive-share``."""
import numpy as np
from chainer.iterators import OrderSampler
from tqdm import tqdm

from runtime.errors import UsageError


def positive_images(dataset):
    """``(N,)`` bool: the images of a raw ``(img, label_map, labels)``
    dataset with a foreground class (its ``labels``, else every
    example's)."""
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
    """Order sampler of a ``SerialIterator`` whose every batch holds a
    ``share`` of ``positive`` ``(N,)`` examples.

    An epoch is ``ceil(N / batch_size)`` batches; at every batch boundary
    ``j`` its first ``j`` examples hold ``round(share * j)`` positives, so
    a batch holds ``floor`` or ``ceil`` of ``share x batch_size``. Each
    kind is drawn without replacement, repeated whole in fresh orders as
    often as needed and the rest drawn at random (the rarer kind
    repeated, the other subsampled), from ``numpy.random``: a resumed run
    draws the same batches."""

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
