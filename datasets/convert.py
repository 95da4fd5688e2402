"""The converter of the training and validation batches: images of
different sizes padded into one batch."""
import chainer
import numpy as np
from chainer.dataset import concat_examples

from datasets.voc import IGNORE


@chainer.dataset.converter()
def pad_examples(batch, device=None):
    """``concat_examples`` of ``(x, label_map, labels, ...)`` examples that
    may differ in size, plus their sizes.

    Each image sits at the top left of the batch's largest height and
    width, the rest 0 (the mean colour after preprocessing) and its label
    map -1 (ignored). The sizes appended are each image's ``(height,
    width)``, ``(N, 2)`` int on the host (:mod:`models.padding` derives
    the masks from them), or None when all have one size (nothing padded).
    """
    sizes = np.array([np.shape(example[0])[-2:] for example in batch],
                     np.int64)
    if (sizes == sizes[0]).all():
        return concat_examples(batch, device) + (None,)
    padding = (0, IGNORE) + (0,) * (len(batch[0]) - 2)
    return concat_examples(batch, device, padding) + (sizes,)
