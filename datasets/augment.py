"""Training augmentation (``--augment``) with PIL.

Each takes an RGB image ``(H, W, 3)`` uint8 and its label map ``(H, W)``
int32 (-1 ignored) and returns both at the same size: a geometric change
moves the label map with the image (nearest neighbour, so that no label is
interpolated across classes), and a pixel from outside the image gets the
mean colour (0 after preprocessing, as GAIN's erasure) and the label -1.
Every draw comes from ``numpy.random``, seeded by the scripts and saved in
the snapshots, so a resumed run draws the same.

``seg`` is :class:`ScaleCropJitter`; ``autoaugment``,
:class:`AutoAugmentPolicy`, takes the operations of AutoAugment's ImageNet
policy (Cubuk et al., CVPR 2019) in a small fixed set of sub-policies
chosen here, not searched.

Not albumentations: it brings opencv, scipy and pydantic for the dozen
operations PIL has, and its MIT releases have ended.
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
    return {'seg': ScaleCropJitter, 'autoaugment': AutoAugmentPolicy,
            'none': lambda: None}[name]()


def _label_image(label_map):
    return PIL.Image.fromarray(np.ascontiguousarray(label_map, np.int32))


def _sign():
    return 1 if np.random.rand() < 0.5 else -1


class ScaleCropJitter(object):
    """The image scaled by ``s ~ U(scale)`` (bilinear; the label map by
    nearest neighbour), then a window of its original size taken at a
    uniformly drawn offset: a crop where it grew, a placement on the mean
    colour (label -1) where it shrank. The scaled image's brightness,
    contrast and saturation are each multiplied by ``~ U(1 - jitter, 1 +
    jitter)``, in that order (``PIL.ImageEnhance``)."""

    def __init__(self, scale=(0.75, 1.25), jitter=0.3):
        self.scale, self.jitter = scale, jitter

    def __call__(self, img, label_map):
        h, w = label_map.shape
        s = self.draw_scale()
        size = (max(1, int(round(w * s))), max(1, int(round(h * s))))
        image = PIL.Image.fromarray(img).resize(size, PIL.Image.BILINEAR)
        labels = _label_image(label_map).resize(size, PIL.Image.NEAREST)
        # the scaled image's top left corner in the window, y then x
        at = [int(np.random.randint(0, abs(n - side) + 1)) * (
            1 if n < side else -1) for n, side in ((size[1], h), (size[0], w))]
        for enhance in (PIL.ImageEnhance.Brightness,
                        PIL.ImageEnhance.Contrast, PIL.ImageEnhance.Color):
            image = enhance(image).enhance(
                np.random.uniform(1 - self.jitter, 1 + self.jitter))
        out = PIL.Image.new('RGB', (w, h), FILL)
        window = PIL.Image.new('I', (w, h), IGNORE)
        out.paste(image, at[::-1])
        window.paste(labels, at[::-1])
        return np.asarray(out), np.asarray(window, np.int32)

    def draw_scale(self):
        """The scale of one example, ``~ U(scale)``."""
        return np.random.uniform(*self.scale)


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
#: magnitude))`` each: eight sub-policies, each operation in at least one.
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
    """One of ``sub_policies`` drawn uniformly, each of its operations
    applied with its probability; rotations and translations move the
    label map too."""

    def __init__(self, sub_policies=SUB_POLICIES):
        self.sub_policies = sub_policies

    def __call__(self, img, label_map):
        image = PIL.Image.fromarray(img)
        labels = _label_image(label_map)
        policy = self.sub_policies[np.random.randint(len(self.sub_policies))]
        for name, probability, magnitude in policy:
            if np.random.rand() < probability:
                image, labels = OPERATIONS[name](image, labels, magnitude)
        return np.asarray(image), np.asarray(labels, np.int32)
