"""models/resize.py: bilinear resizing against PIL's."""
import numpy as np
import PIL.Image

from models import resize_bilinear


def test_resize_matches_pil_bilinear():
    rng = np.random.RandomState(0)
    maps = rng.rand(2, 4, 5).astype(np.float32)
    out = resize_bilinear(maps, (16, 23)).array
    for m, o in zip(maps, out):
        pil = np.asarray(PIL.Image.fromarray(m, mode='F').resize(
            (23, 16), PIL.Image.BILINEAR))
        np.testing.assert_allclose(o, pil, atol=1e-5)
