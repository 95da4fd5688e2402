"""``shapes``: a small synthetic, deliberately biased dataset in VOC layout.

Described in docs/SHAPES.md: five textured shapes whose context cues come
with them in ``train`` and ``val`` (probability ``bias``) and independently
of them in ``tune`` and ``test``: the boats-on-water trap of GAIN at 96 x
96 pixels, with masks and annotations. Every image is
drawn from its own stream ``default_rng([seed, stream of its split, i])``:
the same seed gives byte-identical files, and no two splits share a stream.

CLI: ``python -m datasets.shapes --out DIR --seed S``.
"""
import argparse
import colorsys
import json
import os
import shutil
import tempfile

import filelock
import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import binary_dilation, binary_erosion
from tqdm import tqdm

from datasets.voc import voc_palette
from runtime.errors import DatasetError
from runtime.files import read_json, read_text, write_text

VERSION = 2
CLASS_NAMES = ('background', 'disc', 'square', 'triangle', 'cross', 'ring')
CUE_NAMES = ('water', 'sunset', 'hedge', 'curtain', 'brick')
# Approximate mean RGB of each cue as rendered (before colour jitter).
CUE_COLOURS = {'water': (42, 92, 200), 'sunset': (235, 140, 35),
               'hedge': (45, 150, 55), 'curtain': (140, 45, 160),
               'brick': (170, 80, 65)}
SPLITS = ('train', 'val', 'tune', 'test')
#: The random stream of each split's images (the first three as in version
#: 1, so their images did not change when ``tune`` was added).
STREAMS = dict(train=0, val=1, test=2, tune=3)
#: Splits whose cues are drawn independently of the classes.
UNBIASED = ('tune', 'test')
N_OBJECTS = (1, 2, 3)          # uniform; classes drawn without replacement
P_CUE_ABSENT = 0.05            # P(cue c | class c absent) in train and val
OBJECT_DIAMETER = (0.18, 0.36)  # fraction of the image side
BAND_WIDTH = (0.22, 0.30)       # fraction of the image side
CORE = 0.2, 0.32, 0.68          # cue_core geometry (fractions of the side)
SUPERSAMPLE = 4
RING_HOLE = 0.4                 # inner radius / outer radius of a ring
SQUARE = np.ones((3, 3), bool)  # the ignore band: 1 px in, 1 px out
OWN_FILES = ('JPEGImages', 'SegmentationClass', 'Annotations', 'ImageSets',
             'class_names.txt', 'meta.json')
DEFAULTS = dict(size=96, n_train=600, n_val=100, n_tune=200, n_test=200,
                bias=0.9)
FLAG_HELP = dict(size='side of the square images in pixels (>= 48)',
                 bias='P(cue | its class) in train and val, in [0, 1]',
                 **{'n_' + s: 'images in the %s split' % s for s in SPLITS})
ANNOTATION_XML = (
    '<annotation><folder>shapes</folder><filename>{0}.jpg</filename>'
    '<size><width>{1}</width><height>{1}</height><depth>3</depth></size>'
    '<segmented>1</segmented>{2}</annotation>\n')
OBJECT_XML = (
    '<object><name>{}</name><pose>Unspecified</pose><truncated>0</truncated>'
    '<difficult>0</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin>'
    '<xmax>{}</xmax><ymax>{}</ymax></bndbox></object>')


def cue_core(cue, size):
    """(size, size) bool: pixels only cue ``cue`` can paint when present."""
    edge, lo, hi = (int(round(f * size)) for f in CORE)
    m = np.zeros((size, size), bool)
    rows, cols = {'water': (slice(size - edge, size), slice(lo, hi)),
                  'sunset': (slice(0, edge), slice(lo, hi)),
                  'hedge': (slice(lo, hi), slice(0, edge)),
                  'curtain': (slice(lo, hi), slice(size - edge, size)),
                  'brick': (slice(lo, hi), slice(lo, hi))}[cue]
    m[rows, cols] = True
    return m


def _coverage(kind, cx, cy, r, angle, size):
    """(size, size) float32 in [0, 1]: the anti-aliased area of a shape of
    bounding radius ``r`` centred at (cx, cy) pixels."""
    k = SUPERSAMPLE
    im = Image.new('L', (size * k, size * k), 0)
    d = ImageDraw.Draw(im)
    cx, cy, r = cx * k, cy * k, r * k

    def poly(local):
        c, s = np.cos(angle), np.sin(angle)
        d.polygon([(cx + x * c - y * s, cy + x * s + y * c)
                   for x, y in local], fill=255)

    if kind in ('disc', 'ring'):
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        if kind == 'ring':
            q = RING_HOLE * r
            d.ellipse([cx - q, cy - q, cx + q, cy + q], fill=0)
    elif kind in ('square', 'triangle'):
        n = 4 if kind == 'square' else 3
        poly([(r * np.cos(2 * np.pi * i / n), r * np.sin(2 * np.pi * i / n))
              for i in range(n)])
    elif kind == 'cross':
        h, a = 0.28 * r, 0.96 * r
        poly([(a, h), (h, h), (h, a), (-h, a), (-h, h), (-a, h),
              (-a, -h), (-h, -h), (-h, -a), (h, -a), (h, -h), (a, -h)])
    im = im.resize((size, size), Image.BOX)
    return np.asarray(im, np.float32) / 255


def _texture(kind, size, phase, centre):
    """(size, size) float32 in {0, 1}: where the second colour shows;
    a ring's bands are concentric about its ``centre`` (x, y)."""
    y, x = np.mgrid[:size, :size] + phase[:, None, None]
    if kind == 'disc':
        t = ((x % 5) - 2.5) ** 2 + ((y % 5) - 2.5) ** 2 < 1.6
    elif kind == 'square':
        t = (y % 4) < 2
    elif kind == 'triangle':
        t = ((x // 3) + (y // 3)) % 2 == 1
    elif kind == 'cross':
        t = ((x + y) % 5) < 2
    else:           # ring: concentric bands, 2 px wide
        cy, cx = np.mgrid[:size, :size] + 0.5
        t = np.hypot(cx - centre[0], cy - centre[1]) % 4 < 2
    return t.astype(np.float32)


def _paint_cue(img, cue, rng):
    """Paint cue ``cue`` into ``img`` (size, size, 3) float32, in place."""
    size = img.shape[0]
    colour = np.array(CUE_COLOURS[cue], np.float32) + rng.uniform(-12, 12, 3)
    w = int(round(rng.uniform(*BAND_WIDTH) * size))
    phase = rng.integers(0, 12, 2)
    y, x = np.mgrid[:size, :size]
    if cue == 'brick':
        bh, bw = 6, 12
        row = (y + phase[0]) // bh
        mortar = ((y + phase[0]) % bh == 0) | \
            ((x + phase[1] + (row % 2) * bw // 2) % bw == 0)
        img[:] = np.where(mortar[..., None], colour + 45, colour - 12)
        return
    region = {'water': y >= size - w, 'sunset': y < w,
              'hedge': x < w, 'curtain': x >= size - w}[cue]
    img[region] = colour
    if cue == 'water':   # lighter ripple dashes
        ripple = region & ((y + phase[0]) % 5 == 0) & ((x + phase[1]) % 12 < 7)
        img[ripple] = colour + 40


def _place(rng, n, size):
    """n non-overlapping discs inside the image: list of (cx, cy, r)."""
    for _ in range(1000):
        r = rng.uniform(*OBJECT_DIAMETER, size=n) * size / 2
        c = rng.uniform(r[:, None] + 2, size - r[:, None] - 2, (n, 2))
        dist = np.hypot(*(c[:, None] - c[None]).transpose(2, 0, 1))
        gap = dist - (r[:, None] + r[None]) - 4
        if n == 1 or gap[np.triu_indices(n, 1)].min() > 0:
            return [(c[i, 0], c[i, 1], r[i]) for i in range(n)]
    raise RuntimeError('could not place objects')


def render(rng, size, split, bias):
    """One image: ``(image (size, size, 3) uint8, label (size, size) uint8,
    info)``, info with the 'classes' and 'cues' (names) and the 'objects',
    each with its class, geometry and 'box' ``[x_min, y_min, x_max,
    y_max]``, the 0-based pixels it covers at least half."""
    n_fg = len(CUE_NAMES)
    k = rng.choice(N_OBJECTS)
    classes = sorted(rng.choice(n_fg, k, replace=False) + 1)
    present = np.isin(np.arange(1, n_fg + 1), classes)
    if split in UNBIASED:
        q = np.mean(N_OBJECTS) / n_fg
        p = np.full(n_fg, bias * q + P_CUE_ABSENT * (1 - q))
    else:
        p = np.where(present, bias, P_CUE_ABSENT)
    cues = [CUE_NAMES[i] for i in np.flatnonzero(rng.random(n_fg) < p)]

    grey = rng.uniform(95, 150) + rng.uniform(-8, 8, 3)
    img = np.broadcast_to(grey, (size, size, 3)).astype(np.float32)
    # brick fills the background first; side bands go under top/bottom ones
    for cue in ('brick', 'hedge', 'curtain', 'sunset', 'water'):
        if cue in cues:
            _paint_cue(img, cue, rng)

    label = np.zeros((size, size), np.uint8)
    objects = []
    for c, (cx, cy, r) in zip(classes, _place(rng, k, size)):
        kind = CLASS_NAMES[c]
        angle = rng.uniform(0, 2 * np.pi)
        hsv = rng.uniform(0, 1), rng.uniform(0.5, 0.9), rng.uniform(0.55, 0.95)
        base = np.array(colorsys.hsv_to_rgb(*hsv), np.float32) * 255
        second = base * 0.4 + (153 if base.mean() < 128 else 0)
        t = _texture(kind, size, rng.integers(0, 12, 2), (cx, cy))[..., None]
        colour = base * (1 - t) + second * t
        a = _coverage(kind, cx, cy, r, angle, size)
        img = img * (1 - a[..., None]) + colour * a[..., None]
        hard = a >= 0.5
        inner = binary_erosion(hard, SQUARE, border_value=1)
        label[binary_dilation(hard, SQUARE) & ~inner] = 255
        label[inner] = c
        ys, xs = np.nonzero(hard)
        objects.append(dict(cls=kind, cx=round(float(cx), 2),
                            cy=round(float(cy), 2), r=round(float(r), 2),
                            angle=round(float(angle), 3),
                            box=[int(xs.min()), int(ys.min()),
                                 int(xs.max()), int(ys.max())]))
    img = img + rng.normal(0, 5, img.shape)
    info = dict(classes=[CLASS_NAMES[c] for c in classes], cues=cues,
                objects=objects)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), label, info


def _params(seed=0, **kwargs):
    unknown = set(kwargs) - set(DEFAULTS)
    if unknown:
        raise TypeError('unknown parameters: %s' % sorted(unknown))
    p = dict(DEFAULTS, **kwargs)
    p = dict(seed=int(seed), size=int(p['size']), bias=float(p['bias']),
             **{'n_' + s: int(p['n_' + s]) for s in SPLITS})
    if p['size'] < 48:
        raise ValueError('size must be >= 48 (objects would vanish)')
    if min(p['n_' + s] for s in SPLITS) < 0:
        raise ValueError('split sizes must be >= 0')
    if not 0 <= p['bias'] <= 1:
        raise ValueError('bias must be in [0, 1]')
    return p


def annotation_xml(image_id, size, info):
    """The VOC annotation of one image: its objects' class names and boxes
    (1-based, inclusive, as VOC's), none truncated or difficult."""
    objects = ''.join(OBJECT_XML.format(obj['cls'], *(
        v + 1 for v in obj['box'])) for obj in info['objects'])
    return ANNOTATION_XML.format(image_id, size, objects)


def generate(root, seed=0, **kwargs):
    """Write the dataset into ``root`` (``kwargs``: :data:`DEFAULTS`), its
    meta.json last; returns the meta dict."""
    params = _params(seed=seed, **kwargs)
    for d in ('JPEGImages', 'SegmentationClass', 'Annotations',
              'ImageSets/Segmentation', 'ImageSets/Main'):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    palette = voc_palette()
    images = {}
    shown = tqdm(total=sum(params['n_' + s] for s in SPLITS),
                 desc='generating the shapes dataset', unit='image')
    for split in SPLITS:
        ids = ['%s_%05d' % (split, i) for i in range(params['n_' + split])]
        for i, id_ in enumerate(ids):
            rng = np.random.default_rng([params['seed'], STREAMS[split], i])
            img, label, info = render(rng, params['size'], split,
                                      params['bias'])
            Image.fromarray(img).save(os.path.join(
                root, 'JPEGImages', id_ + '.jpg'), quality=95, subsampling=0)
            png = Image.fromarray(label, 'P')
            png.putpalette(palette)
            png.save(os.path.join(root, 'SegmentationClass', id_ + '.png'))
            write_text(os.path.join(root, 'Annotations', id_ + '.xml'),
                       annotation_xml(id_, params['size'], info))
            images[id_] = dict(split=split, **info)
            shown.update()
        for layout in ('Segmentation', 'Main'):
            write_text(os.path.join(root, 'ImageSets', layout, split + '.txt'),
                       ''.join(id_ + '\n' for id_ in ids))
    shown.close()
    write_text(os.path.join(root, 'class_names.txt'),
               ''.join(name + '\n' for name in CLASS_NAMES))
    meta = dict(version=VERSION, params=params, class_names=CLASS_NAMES,
                cue_names=CUE_NAMES, cue_of_class=dict(
                    zip(CLASS_NAMES[1:], CUE_NAMES)),
                p_cue_absent=P_CUE_ABSENT, images=images)
    write_text(os.path.join(root, 'meta.json'),
               json.dumps(meta, indent=1, sort_keys=True))
    return json.loads(json.dumps(meta))


def default_root(seed=0):
    """``<repo root>/data/shapes-seed<seed>``."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(repo, 'data', 'shapes-seed%d' % seed)


def _is_current(root, params):
    try:
        meta = read_json(os.path.join(root, 'meta.json'))
    except ValueError:          # missing, not a regular file, not JSON
        return False
    return (isinstance(meta, dict) and meta.get('version') == VERSION and
            meta.get('params') == params)


def ensure(root=None, seed=0, **kwargs):
    """Path of a generated dataset: reused when its meta.json has this
    version and these parameters, else generated in a temporary sibling
    renamed into place (an interrupted run never leaves a half-written
    directory that looks valid). One process generates at a time (the lock
    ``.<name>.lock`` beside it), so an interrupted one's temporaries
    (``.<name>.tmp-*``, ``.<name>.old-*``) are stale and removed. A
    ``root`` holding anything but dataset files is never replaced
    (FileExistsError)."""
    params = _params(seed=seed, **kwargs)
    root = os.path.abspath(root or default_root(params['seed']))
    if _is_current(root, params):
        return root
    parent, name = os.path.split(root)
    os.makedirs(parent, exist_ok=True)
    with filelock.FileLock(os.path.join(parent, '.%s.lock' % name)):
        if _is_current(root, params):    # made by the process we waited for
            return root
        if os.path.isdir(root) and not set(os.listdir(root)) <= set(OWN_FILES):
            raise FileExistsError('%s holds files that are not a shapes '
                                  'dataset; not replacing it' % root)
        for entry in os.listdir(parent):
            if entry.startswith(('.%s.tmp-' % name, '.%s.old-' % name)):
                shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
        tmp = tempfile.mkdtemp(prefix='.%s.tmp-' % name, dir=parent)
        trash = tempfile.mkdtemp(prefix='.%s.old-' % name, dir=parent)
        try:
            generate(tmp, **params)
            if os.path.lexists(root):
                os.replace(root, os.path.join(trash, name))
            os.replace(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(trash, ignore_errors=True)
    return root


def read_split(root, split):
    """List of ids in ``root/ImageSets/Segmentation/<split>.txt``."""
    path = os.path.join(root, 'ImageSets', 'Segmentation', split + '.txt')
    return read_text(path, 'list', error=DatasetError).split()


def _fraction(k, n):
    return float(k) / n if n else float('nan')


def bias_statistics(root, split):
    """Cue/class co-occurrence of a split, from meta.json: ``{class name:
    dict(cue, n_class, n_not_class, n_cue_and_class, p_cue,
    p_cue_given_class, p_cue_given_not_class)}`` (nan without cases)."""
    ids = read_split(root, split)
    has_class = _flags(root, ids, 'classes', CLASS_NAMES[1:])
    has_cue = cue_flags(root, ids)
    stats = {}
    for c, name in enumerate(CLASS_NAMES[1:]):
        cls, cue = has_class[:, c], has_cue[:, c]
        stats[name] = dict(
            cue=CUE_NAMES[c], n_class=int(cls.sum()),
            n_not_class=int((~cls).sum()),
            n_cue_and_class=int((cue & cls).sum()),
            p_cue=_fraction(cue.sum(), len(ids)),
            p_cue_given_class=_fraction((cue & cls).sum(), cls.sum()),
            p_cue_given_not_class=_fraction((cue & ~cls).sum(), (~cls).sum()))
    return stats


def _flags(root, ids, key, names):
    """``(N, len(names))`` bool: which of ``names`` the ``key`` list of
    each image of ``ids`` in ``root/meta.json`` holds."""
    images = read_json(os.path.join(root, 'meta.json'),
                       error=DatasetError)['images']
    return np.array([[n in images[i][key] for n in names] for i in ids],
                    bool).reshape(-1, len(names))


def cue_flags(root, ids):
    """``(N, 5)`` bool: which class's cue each image of ``ids`` holds
    (column ``c - 1`` for class ``c``), from ``root/meta.json``."""
    return _flags(root, ids, 'cues', CUE_NAMES)


def format_statistics(stats, split):
    """Small text table of ``bias_statistics`` output."""
    lines = ['%-6s %-9s %-8s %6s %12s %13s' % (
        split, 'class', 'cue', 'n_cls', 'P(cue|cls)', 'P(cue|~cls)')]
    for name, s in stats.items():
        lines.append('%-6s %-9s %-8s %6d %12.3f %13.3f' % (
            '', name, s['cue'], s['n_class'], s['p_cue_given_class'],
            s['p_cue_given_not_class']))
    return '\n'.join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] + ' Generates it (or reuses '
        'one made with the same parameters) and prints its bias statistics.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument('--out', default=argparse.SUPPRESS,
                    help='directory (default: data/shapes-seed<S> in the '
                    'project)')
    ap.add_argument('--seed', type=int, default=0,
                    help='seed of every image (same seed, same files)')
    for k, v in DEFAULTS.items():
        ap.add_argument('--' + k.replace('_', '-'), type=type(v), default=v,
                        help=FLAG_HELP[k])
    args = vars(ap.parse_args(argv))
    if args['seed'] < 0:
        ap.error('--seed must be >= 0, got %d' % args['seed'])
    root = ensure(args.pop('out', None), **args)
    print(root)
    for split in SPLITS:
        print(format_statistics(bias_statistics(root, split), split))


if __name__ == '__main__':
    main()
