"""The memory a training step of FCN8s needs: a batch that surely cannot
fit is refused before the first step."""
import numpy as np

from models.fcn8s import POOLED, TRUNK
from runtime.errors import OutOfMemory


def trunk_activations(model, shape):
    """``[(inputs, outputs)]``: element counts per image of each trunk
    layer (convolutions and poolings) of a classification forward on an
    ``(H, W)`` image."""
    h, w = shape
    layers = []
    for name in TRUNK:
        channels = getattr(model, name).W.shape[0]
        layers.append((layers[-1][1] if layers else 3 * h * w,
                       channels * h * w))
        if name in POOLED:
            h, w = -(-h // 2), -(-w // 2)        # 2x2 max pooling, ceil
            layers.append((layers[-1][1], channels * h * w))
    return layers


def available_memory(device):
    """Bytes ``device`` can still allocate (free GPU memory, or
    MemAvailable); None if unknown."""
    if device.xp is not np:
        free, _ = device.xp.cuda.runtime.memGetInfo()
        return int(free)
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def step_memory(model, shape, batch_size, backprop):
    """A lower bound of the bytes of a training step on ``batch_size``
    images of ``shape``: the trunk's activations of one classification
    forward, all kept (``backprop``) or the largest layer's."""
    layers = trunk_activations(model, shape)
    count = (sum(out for _, out in layers) if backprop else
             max(a + b for a, b in layers))
    return count * batch_size * model.conv1_1.W.dtype.itemsize


def check_batch_fits(model, shape, batch_size, device):
    """OutOfMemory naming ``--batch-size`` when a step surely cannot fit
    in what ``device`` has left."""
    rule = model.conv1_1.W.update_rule
    need = step_memory(model, shape, batch_size,
                       backprop=rule is not None and rule.enabled)
    have = available_memory(device)
    if have is not None and need > have:
        raise OutOfMemory(
            '--batch-size %d: a training step on %dx%d images needs at '
            'least %s of memory, %s is available; use a smaller '
            '--batch-size' % (batch_size, shape[0], shape[1],
                              _gigabytes(need), _gigabytes(have)))


def _gigabytes(n):
    return '%.3g GB' % (n / 1e9) if n >= 1e7 else '%.2g MB' % (n / 1e6)
