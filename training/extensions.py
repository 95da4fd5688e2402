"""Trainer extensions: a picture of the attention during training."""
import os

import chainer
import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # NOQA

from datasets import deprocess  # NOQA
from models import cam_from_features, normalize_cam  # NOQA
from models.gain import erase, soft_mask  # NOQA


def attention_rows(model, x, labels, sigma, omega):
    """Image, normalised CAM, soft mask and erased image of each example.

    Args:
        x: ``(N, 3, H, W)`` preprocessed images; labels ``(N, K)`` multi-hot.
    Returns:
        list of ``(img, cam, mask, erased_img)`` numpy arrays.
    """
    with chainer.using_config('train', False):
        with chainer.no_backprop_mode():  # only the head needs a graph
            features = model.features(x).array
        cam = normalize_cam(cam_from_features(model, features, labels,
                                              x.shape[2:]))
        with chainer.no_backprop_mode():
            mask = soft_mask(cam, sigma, omega)
            erased = erase(x, mask)
    to_cpu = chainer.backend.CpuDevice().send
    cam, mask, erased, x = (to_cpu(v.array if hasattr(v, 'array') else v)
                            for v in (cam, mask, erased, x))
    return [(deprocess(x[i]), cam[i], mask[i], deprocess(erased[i]))
            for i in range(len(x))]


def save_attention_grid(rows, path, title=''):
    """One row per image: image | CAM | mask | erased image."""
    fig, axes = plt.subplots(len(rows), 4, figsize=(8, 2 * len(rows)),
                             squeeze=False)
    for r, (img, cam, mask, erased) in enumerate(rows):
        panels = [(img, None), (cam, 'jet'), (mask, 'gray'), (erased, None)]
        for c, (a, cmap) in enumerate(panels):
            ax = axes[r, c]
            if cmap:
                ax.imshow(img)
                ax.imshow(a, cmap=cmap, vmin=0, vmax=1, alpha=0.6)
            else:
                ax.imshow(a)
            ax.set_axis_off()
            if r == 0:
                ax.set_title(('image', 'CAM', 'mask T', 'erased I*')[c])
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path + '.tmp.png', dpi=80)
    plt.close(fig)
    os.replace(path + '.tmp.png', path)


class AttentionSnapshot(chainer.training.Extension):
    """Writes ``out/attention/iter_<N>.png`` for a fixed set of examples
    ``(x, lbl, labels, ...)`` so attention can be watched as it moves."""

    def __init__(self, model, examples, sigma=0.5, omega=10.0):
        self.model = model
        self.x = np.stack([e[0] for e in examples])
        self.labels = np.stack([e[2] for e in examples])
        self.sigma, self.omega = sigma, omega

    def __call__(self, trainer):
        directory = os.path.join(trainer.out, 'attention')
        os.makedirs(directory, exist_ok=True)
        device = self.model.device
        rows = attention_rows(self.model, device.send(self.x),
                              device.send(self.labels), self.sigma,
                              self.omega)
        it = trainer.updater.iteration
        save_attention_grid(rows, os.path.join(directory,
                                               'iter_%06d.png' % it),
                            'iteration %d' % it)
