"""Training augmentation (``--augment``), with PIL and numpy.

Each takes an example's RGB image ``(H, W, 3)`` uint8 and its label map
``(H, W)`` int32 (-1 ignored; -1 everywhere for an image without a mask)
and returns both, of the same size: a geometric change moves the label map
with the image (nearest neighbour, so that no label is interpolated across
classes), and a pixel that comes from outside the image gets the mean
colour (0 after preprocessing, as GAIN's erasure) and the label -1. The
image-level labels are kept as they are. Every random draw comes from
``numpy.random``, seeded by the scripts and saved in the snapshots, so a
resumed run draws the same.

* ``seg``, :class:`ScaleCropJitter`: a random scale, a random crop (or
  placement, when smaller) back to the image's size, and colour jitter.
* ``autoaugment``, :class:`AutoAugmentPolicy`: one of
  :data:`SUB_POLICIES` at random, each of its two operations applied with
  its probability (AutoAugment, Cubuk et al., CVPR 2019: the operations of
  its ImageNet policy, a small fixed set of sub-policies chosen here, not
  searched).

albumentations is not used: its last MIT release (2.0.8) installs on
numpy 1.26 with Python 3.11 and 3.12, but brings opencv, scipy and pydantic
for the dozen operations PIL has, and is no longer developed under that
licence.
"""
import numpy as np
import PIL.Image
import PIL.ImageEnhance
import PIL.ImageOps

from datasets.transforms import MEAN_BGR
from datasets.voc import IGNORE

#: The values of ``--augment``.
AUGMENTATIONS = ('none', 'seg', 'autoaugment')
#: The mean colour as an RGB fill.
FILL = tuple(int(round(v)) for v in MEAN_BGR[::-1])


def augmentation(name):
    """The augmentation of a ``--augment`` value (None for ``none``)."""
    if name not in AUGMENTATIONS:
        raise ValueError('augmentation must be one of %s, got %r'
                         % (', '.join(AUGMENTATIONS), name))
    if name == 'seg':
        return ScaleCropJitter()
    return AutoAugmentPolicy() if name == 'autoaugment' else None


def _label_image(label_map):
    return PIL.Image.fromarray(np.ascontiguousarray(label_map, np.int32))


def _labels(image):
    return np.asarray(image, dtype=np.int32)


def _sign():
    return 1 if np.random.rand() < 0.5 else -1


class ScaleCropJitter(object):
    """Random scale and crop, and colour jitter, for segmentation samples.

    The image is scaled by ``s ~ U(scale)`` (bilinear; the label map by
    nearest neighbour), then a window of its original size is taken at a
    uniformly drawn offset: a crop where it grew, a placement on the mean
    colour (label -1) where it shrank. Before that, the brightness,
    contrast and colour saturation of the scaled image are each multiplied
    by a factor ``~ U(1 - jitter, 1 + jitter)``, in that order
    (``PIL.ImageEnhance``; the fill stays the mean colour).
    """

    def __init__(self, scale=(0.75, 1.25), jitter=0.3):
        self.scale, self.jitter = scale, jitter

    def __call__(self, img, label_map):
        h, w = label_map.shape
        s = self.draw_scale()
        size = (max(1, int(round(w * s))), max(1, int(round(h * s))))
        image = PIL.Image.fromarray(img).resize(size, PIL.Image.BILINEAR)
        labels = _labels(_label_image(label_map).resize(size,
                                                        PIL.Image.NEAREST))
        (ys, yd), (xs, xd) = (_window(n, m) for n, m in ((size[1], h),
                                                         (size[0], w)))
        for enhance in (PIL.ImageEnhance.Brightness,
                        PIL.ImageEnhance.Contrast, PIL.ImageEnhance.Color):
            image = enhance(image).enhance(
                np.random.uniform(1 - self.jitter, 1 + self.jitter))
        out = np.empty((h, w, 3), np.uint8)
        out[...] = FILL
        window = np.full((h, w), IGNORE, np.int32)
        out[yd, xd] = np.asarray(image)[ys, xs]
        window[yd, xd] = labels[ys, xs]
        return out, window

    def draw_scale(self):
        """The scale of one example, ``~ U(scale)``."""
        return np.random.uniform(*self.scale)


def _window(scaled, side):
    """``(source, destination)`` slices of one axis: a crop of ``side``
    pixels from ``scaled`` ones, or their placement in ``side``, at an
    offset drawn uniformly."""
    offset = int(np.random.randint(0, abs(scaled - side) + 1))
    if scaled >= side:
        return slice(offset, offset + side), slice(0, side)
    return slice(0, scaled), slice(offset, offset + scaled)


# -- AutoAugment -------------------------------------------------------------
def _enhance(kind):
    def apply(image, labels, magnitude):
        return kind(image).enhance(1 + _sign() * magnitude), labels
    return apply


def _rotate(image, labels, degrees):
    angle = _sign() * degrees
    return (image.rotate(angle, PIL.Image.BILINEAR, fillcolor=FILL),
            labels.rotate(angle, PIL.Image.NEAREST, fillcolor=IGNORE))


def _translate(axis):
    def apply(image, labels, fraction):
        shift = _sign() * fraction * image.size[axis]
        matrix = (1, 0, shift, 0, 1, 0) if axis == 0 else (1, 0, 0, 0, 1,
                                                          shift)
        return (image.transform(image.size, PIL.Image.AFFINE, matrix,
                                PIL.Image.BILINEAR, fillcolor=FILL),
                labels.transform(labels.size, PIL.Image.AFFINE, matrix,
                                 PIL.Image.NEAREST, fillcolor=IGNORE))
    return apply


def _photometric(op):
    def apply(image, labels, magnitude):
        return op(image, magnitude), labels
    return apply


#: ``name: (image, label image, magnitude) -> (image, label image)``.
#: Enhancements multiply by ``1 +- magnitude``; rotate turns by ``+-
#: magnitude`` degrees, translate shifts by ``+- magnitude`` of the side;
#: posterize keeps ``magnitude`` bits, solarize inverts from ``magnitude``.
OPERATIONS = {
    'autocontrast': _photometric(lambda im, _: PIL.ImageOps.autocontrast(im)),
    'equalize': _photometric(lambda im, _: PIL.ImageOps.equalize(im)),
    'posterize': _photometric(PIL.ImageOps.posterize),
    'solarize': _photometric(PIL.ImageOps.solarize),
    'brightness': _enhance(PIL.ImageEnhance.Brightness),
    'contrast': _enhance(PIL.ImageEnhance.Contrast),
    'color': _enhance(PIL.ImageEnhance.Color),
    'sharpness': _enhance(PIL.ImageEnhance.Sharpness),
    'rotate': _rotate,
    'translate_x': _translate(0),
    'translate_y': _translate(1),
}

#: ``((operation, probability, magnitude), (operation, probability,
#: magnitude))`` each: eight sub-policies, each operation of
#: :data:`OPERATIONS` in at least one.
SUB_POLICIES = (
    (('posterize', 0.4, 5), ('rotate', 0.6, 20)),
    (('solarize', 0.6, 128), ('autocontrast', 0.6, None)),
    (('equalize', 0.8, None), ('translate_x', 0.6, 0.15)),
    (('color', 0.4, 0.5), ('equalize', 0.6, None)),
    (('contrast', 0.6, 0.5), ('sharpness', 0.6, 0.5)),
    (('brightness', 0.6, 0.4), ('translate_y', 0.4, 0.15)),
    (('rotate', 0.8, 10), ('color', 0.6, 0.3)),
    (('sharpness', 0.4, 0.6), ('solarize', 0.2, 192)),
)


class AutoAugmentPolicy(object):
    """AutoAugment-style policy for image-level samples: one of
    ``sub_policies`` drawn uniformly, then each of its operations applied
    with its probability (see :data:`OPERATIONS`); rotations and
    translations move the label map too."""

    def __init__(self, sub_policies=SUB_POLICIES):
        self.sub_policies = sub_policies

    def __call__(self, img, label_map):
        image, labels = PIL.Image.fromarray(img), _label_image(label_map)
        policy = self.sub_policies[np.random.randint(len(self.sub_policies))]
        for name, probability, magnitude in policy:
            if np.random.rand() < probability:
                image, labels = OPERATIONS[name](image, labels, magnitude)
        return np.asarray(image), _labels(labels)
