"""A random batch in the layout of ``training_data`` plus the GAIN_ext
flags, for the benchmark and the device-equality tests."""
import numpy as np

LABELS_PER_IMAGE = (2, 3, 1)   # image i has LABELS_PER_IMAGE[i % 3] labels


def make_batch(batch, size, n_class=21, seed=0):
    """Random caffe-like images ``(N, 3, size, size)``, label maps with one
    block per labelled class (row 0 ignored), multi-hot labels and
    pixel-supervision flags (all False)."""
    rng = np.random.RandomState(seed)
    h = w = size
    x = rng.normal(0, 60, (batch, 3, h, w)).astype(np.float32)
    label_map = np.zeros((batch, h, w), dtype=np.int32)
    labels = np.zeros((batch, n_class - 1), dtype=np.int32)
    for i in range(batch):
        k = LABELS_PER_IMAGE[i % len(LABELS_PER_IMAGE)]
        for c in rng.choice(n_class - 1, k, replace=False):
            labels[i, c] = 1
            bh, bw = max(1, h // 3), max(1, w // 3)
            y0, x0 = rng.randint(0, h - bh + 1), rng.randint(0, w - bw + 1)
            label_map[i, y0:y0 + bh, x0:x0 + bw] = c + 1
    label_map[:, 0] = -1
    supervised = np.zeros(batch, dtype=bool)
    return x, label_map, labels, supervised
