"""The converter of the training and validation batches: images of
different sizes padded into one batch."""
import chainer
import numpy as np
from chainer.dataset import concat_examples

from datasets.voc import IGNORE


@chainer.dataset.converter()
def pad_examples(batch, device=None):
    """``concat_examples`` of ``(x, label_map, labels, ...)`` examples that
    also takes images of different sizes, and appends their sizes.

    Each image is put at the top left of the batch's largest height and
    width, the rest 0 (the mean colour after preprocessing) and its label
    map -1 (ignored); the other fields (labels, flags) have one shape.

    Returns:
        ``concat_examples``' tuple plus ``sizes``: each image's
        ``(height, width)``, ``(N, 2)`` int numpy array (on the host: the
        model derives its masks from it, see :mod:`models.padding`), or None
        when every image has the batch's size (then nothing is padded, and
        nothing costs more than before).
    """
    sizes = np.array([np.shape(example[0])[-2:] for example in batch],
                     np.int64)
    if (sizes == sizes[0]).all():
        return concat_examples(batch, device) + (None,)
    padding = (0, IGNORE) + (0,) * (len(batch[0]) - 2)
    return concat_examples(batch, device, padding) + (sizes,)
