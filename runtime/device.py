"""The device of a ``--device`` flag, and seeding every random stream."""
import random

import chainer
import numpy as np

from runtime.errors import UsageError, one_line


def get_device(spec):
    """``chainer.get_device`` of a flag value (ints as in chainer v6),
    made current."""
    try:
        spec = int(spec)
    except ValueError:
        pass
    try:
        device = chainer.get_device(spec)
    except Exception as e:
        raise UsageError('--device %s: %s' % (spec, one_line(e)))
    device.use()
    return device


def set_seed(seed, device=None):
    """Seed ``random``, numpy's global generator and, on a GPU, cupy's."""
    random.seed(seed)
    np.random.seed(seed)
    if device is not None and device.xp is not np:
        device.xp.random.seed(seed)
