"""Helpers of the tests: tiny VOC-format directories, running a script
in-process, reading its error line, toy links and trainers, the command
lines and inputs several test files share, and the GPU tests' helpers."""
import argparse
import copy
import importlib
import os
import shlex
import sys

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
import PIL.Image
import pytest
from chainer.iterators import SerialIterator
from chainer.training import StandardUpdater

from bench.ops import make_batch
from datasets.voc import voc_palette
from models import FCN8s
from models.io import load_model
from runtime.errors import DatasetError
from training.extensions import snapshots
from training.gain_loss import GAINLoss
from training.trainer import build_trainer, make_optimizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_VOC = 21      # VOC's classes with the background
# One BLAS thread for a script run as a process: the machine is small and
# shared.
ENV = dict(os.environ, OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1',
           MKL_NUM_THREADS='1')


def write_example(root, image_id, img, lbl):
    """``JPEGImages/<id>.jpg`` and the palette PNG
    ``SegmentationClass/<id>.png`` of one example under ``root``."""
    PIL.Image.fromarray(img).save(
        os.path.join(root, 'JPEGImages', image_id + '.jpg'), quality=95)
    png = PIL.Image.fromarray(lbl, mode='P')
    png.putpalette(voc_palette())
    png.save(os.path.join(root, 'SegmentationClass', image_id + '.png'))


def write_voc(root, splits, n_class=4, size=(40, 48), seed=0):
    """Write a VOC-format directory with random rectangles.

    ``splits`` maps a split name to its number of images. Returns
    ``{id: (img, lbl)}`` with ``lbl`` as written (255 = ignore).
    """
    rng = np.random.RandomState(seed)
    for d in ('JPEGImages', 'SegmentationClass',
              os.path.join('ImageSets', 'Segmentation')):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    written = {}
    for split, n in splits.items():
        ids = ['%s_%03d' % (split, i) for i in range(n)]
        for i in ids:
            h, w = size
            img = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
            lbl = np.zeros((h, w), dtype=np.uint8)
            for c in rng.choice(np.arange(1, n_class), rng.randint(1, 3),
                                replace=False):
                y, x = rng.randint(0, h - 8), rng.randint(0, w - 8)
                lbl[y:y + 8, x:x + 10] = c
            lbl[0, :] = 255
            write_example(root, i, img, lbl)
            written[i] = (img, lbl)
        with open(os.path.join(root, 'ImageSets', 'Segmentation',
                               split + '.txt'), 'w') as f:
            f.write('\n'.join(ids) + '\n')
    return written


def read_tree(root):
    """{relative path: bytes} of every file under root."""
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            with open(p, 'rb') as f:
                out[os.path.relpath(p, root)] = f.read()
    return out


def relative_error(actual, expected):
    """``|actual - expected| / |expected|`` in the Frobenius norm."""
    return (np.linalg.norm(actual - expected) /
            max(np.linalg.norm(expected), 1e-30))


def error_line(err):
    """The one ``error: ...`` line of a script's stderr."""
    lines = [l for l in err.splitlines() if l.startswith('error:')]
    assert len(lines) == 1, err
    return lines[0]


def thin_fcn8s():
    """A thin FCN8s (n_class 4) with random, non-zero score layers and
    biases (the ``thin_model`` fixture)."""
    np.random.seed(0)
    model = FCN8s(n_class=4, width=1 / 16.)
    rng = np.random.RandomState(1)
    for name, p in model.namedparams():
        if 'score' in name or name.endswith('/b'):
            p.array[...] = rng.normal(0, 0.1, p.shape)
    return model


def float64_model(seed=3):
    """A thin FCN8s in float64 with non-zero score layers and biases."""
    np.random.seed(seed)
    model = FCN8s(n_class=4, width=1 / 16.)
    rng = np.random.RandomState(seed)
    for name, p in model.namedparams():
        if 'score' in name or name.endswith('/b'):
            p.array[...] = rng.normal(0, 0.1, p.shape)
        p.array = p.array.astype(np.float64)
    return model


def observe(loss, *data):
    """Run ``loss`` on ``data``; returns (value, {term: float}) of the terms
    it reports."""
    reporter = chainer.Reporter()
    reporter.add_observer('main', loss)
    observation = {}
    with reporter.scope(observation):
        value = loss(*data)
    return value, {k.split('/')[1]: float(v.array)
                   for k, v in observation.items()}


class Toy(chainer.Link):
    """A one-parameter link that reports its loss, for toy trainers."""

    def __init__(self):
        super().__init__()
        with self.init_scope():
            self.w = chainer.Parameter(np.ones(1, np.float32))

    def forward(self, x):
        loss = F.sum(self.w * x)
        chainer.report({'loss': loss}, self)
        return loss


def run_script(script, argv, monkeypatch, capsys):
    """``(exit status, stderr)`` of ``<script>.main`` run in-process under
    ``cli.run`` with ``argv``; no traceback may reach the output."""
    code, _, err = run_script_output(script, argv, monkeypatch, capsys)
    return code, err


def run_script_output(script, argv, monkeypatch, capsys):
    """``(exit status, stdout, stderr)`` of :func:`run_script`."""
    import importlib
    import sys
    from runtime import cli
    monkeypatch.setattr(sys, 'argv', [script + '.py'] + [str(a)
                                                         for a in argv])
    module = importlib.import_module(script)
    try:
        cli.run(module.main)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert 'Traceback' not in out + err
    return code, out, err


def write_annotation(path, objects, size=(40, 48)):
    """A VOC annotation file: ``objects`` is ``[(name, difficult)]``."""
    parts = ['<annotation><folder>VOC2012</folder><filename>%s.jpg'
             '</filename><size><width>%d</width><height>%d</height><depth>3'
             '</depth></size>' % (os.path.splitext(os.path.basename(path))[0],
                                  size[1], size[0])]
    for name, difficult in objects:
        parts.append('<object><name>%s</name><pose>Unspecified</pose>'
                     '<truncated>0</truncated><difficult>%d</difficult>'
                     '<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax>'
                     '<ymax>9</ymax></bndbox></object>' % (name, difficult))
    with open(path, 'w') as f:
        f.write(''.join(parts) + '</annotation>\n')


def write_weak_voc(root, masked, unmasked, n_class=4, size=(40, 48),
                   seed=0):
    """A VOC directory in both layouts, like VOC2012's: for each split,
    ``masked[split]`` images with a mask (``ImageSets/Segmentation``, ids
    ``<split>_NNN``) and ``unmasked[split]`` more without (ids
    ``<split>_img_NNN``), all of them in ``ImageSets/Main/<split>.txt``
    (plus ``trainval.txt``) with an ``Annotations/<id>.xml`` naming the
    classes of the mask, or random ones (none for every third image).

    Returns ``{id: (img, lbl or None, labels)}``, ``labels`` the multi-hot
    ``(20,)`` labels over VOC's classes.
    """
    from datasets.voc import VOC_CLASS_NAMES
    written = {i: (img, lbl, None) for i, (img, lbl) in
               write_voc(root, masked, n_class, size, seed).items()}
    rng = np.random.RandomState(seed + 1)
    for d in ('Annotations', os.path.join('ImageSets', 'Main')):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    every = []
    for split in sorted(set(masked) | set(unmasked)):
        ids = ['%s_%03d' % (split, i) for i in range(masked.get(split, 0))]
        for i in range(unmasked.get(split, 0)):
            image_id = '%s_img_%03d' % (split, i)
            img = rng.randint(0, 256, size + (3,)).astype(np.uint8)
            PIL.Image.fromarray(img).save(
                os.path.join(root, 'JPEGImages', image_id + '.jpg'))
            classes = ([] if i % 3 == 2 else rng.choice(
                np.arange(1, n_class), rng.randint(1, 3), replace=False))
            written[image_id] = (img, None, classes)
            ids.append(image_id)
        for image_id in ids:
            img, lbl, classes = written[image_id]
            if lbl is not None:
                classes = sorted(set(np.unique(lbl)) - {0, 255})
            labels = np.zeros(len(VOC_CLASS_NAMES) - 1, np.int32)
            labels[np.asarray(classes, int) - 1] = 1
            write_annotation(
                os.path.join(root, 'Annotations', image_id + '.xml'),
                [(VOC_CLASS_NAMES[c], 0) for c in classes], size)
            written[image_id] = (img, lbl, labels)
        with open(os.path.join(root, 'ImageSets', 'Main',
                               split + '.txt'), 'w') as f:
            f.write('\n'.join(ids) + '\n')
        every += ids
    with open(os.path.join(root, 'ImageSets', 'Main', 'trainval.txt'),
              'w') as f:
        f.write('\n'.join(every) + '\n')
    return written


# -- the scripts' command lines ----------------------------------------------
def voc_args(pipeline, out):
    """The flags of a run on the ``pipeline`` fixture's VOC dir."""
    return ['--dataset', 'voc', '--data-dir', pipeline['voc'], '--batch-size',
            2, '--out', out]


def fcn_args(voc, out, *extra):
    """The flags of a 2-update train_fcn run at batch 2 with a snapshot
    after each update."""
    return ['--dataset', 'voc', '--data-dir', voc, '--out', out,
            '--iterations', 2, '--batch-size', 2, '--val-split', '',
            '--width', 1 / 16., '--snapshot-interval', 1] + list(extra)


def fcn_batch4_args(root, out, *extra):
    """The flags of a 2-update train_fcn run at batch 4."""
    return ['--dataset', 'voc', '--data-dir', root, '--out', out,
            '--iterations', 2, '--batch-size', 4, '--val-split', '',
            '--width', 1 / 16.] + list(extra)


def gain_args(files, out, *extra):
    """The flags of a 2-update train_GAIN run on the ``files`` fixture."""
    return ['--dataset', 'voc', '--data-dir', files['voc'], '--out', out,
            '--modelfile', files['model'], '--iterations', 2,
            '--batch-size', 2, '--val-split', '', '--snapshot-interval', 1,
            '--attention-interval', 1] + list(extra)


def finished_fcn(files, out, monkeypatch, capsys):
    """A finished train_fcn run in ``out``; returns its files."""
    code, err = run_script('train_fcn', fcn_args(files['voc'], out),
                           monkeypatch, capsys)
    assert code == 0, err
    return read_tree(str(out))


def voc_copy(files, tmp_path):
    """A copy of the ``files`` fixture's VOC dir, to break."""
    import shutil
    root = str(tmp_path / 'VOC')
    shutil.copytree(files['voc'], root)
    return root


def break_voc(root, how):
    """Break the dataset at ``root``; returns the file the error names."""
    jpg = os.path.join(root, 'JPEGImages', 'train_001.jpg')
    png = os.path.join(root, 'SegmentationClass', 'train_001.png')
    split = os.path.join(root, 'ImageSets', 'Segmentation', 'train.txt')
    if how == 'missing-image':
        with open(split, 'a') as f:
            f.write('ghost\n')
        return split
    if how == 'empty-split':
        open(split, 'w').write('\n\n')
        return split
    if how == 'binary-split':
        open(split, 'wb').write(np.random.RandomState(0).bytes(300))
        return split
    if how == 'no-split':
        os.remove(split)
        return 'train'
    if how == 'not-voc':
        import shutil
        shutil.rmtree(os.path.join(root, 'SegmentationClass'))
        return root
    if how == 'random-jpeg':
        open(jpg, 'wb').write(np.random.RandomState(0).bytes(500))
        return jpg
    if how == 'truncated-jpeg':
        data = open(jpg, 'rb').read()
        open(jpg, 'wb').write(data[:len(data) // 2])
        return jpg
    lbl = np.asarray(PIL.Image.open(png))
    if how == 'label-out-of-range':
        lbl = lbl.copy()
        lbl[5, 5] = 25
    elif how == 'label-size':
        lbl = lbl[:-3]
    elif how == 'label-rgb':
        PIL.Image.fromarray(np.stack([lbl] * 3, 2)).save(png)
        return png
    im = PIL.Image.fromarray(lbl, mode='P')
    im.putpalette(voc_palette())
    im.save(png)
    return jpg if how == 'label-size' else png


class Parsed(Exception):
    """Raised by :func:`parser_of` with the parser."""


def parser_of(command, monkeypatch):
    """The ArgumentParser that ``command``'s main() builds."""
    def capture(self, *args, **kwargs):
        raise Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', capture)
    monkeypatch.setattr(sys, 'argv', [command])
    with pytest.raises(Parsed) as e:
        importlib.import_module(command).main()
    return e.value.args[0]


def printed_next(out_text):
    """The model path and the next commands a training run printed."""
    lines = out_text.splitlines()
    model = [l.split(': ', 1)[1] for l in lines if l.startswith('model: ')]
    nexts = [shlex.split(l.split(': ', 1)[1]) for l in lines
             if l.startswith('next: ')]
    return model, nexts


# -- datasets ----------------------------------------------------------------
NAMES = ('background', 'cat', 'dog', 'person')


def refused(call, *named):
    """The one-line DatasetError of ``call()``, which must name each of
    ``named``."""
    with pytest.raises(DatasetError) as e:
        call()
    message = str(e.value)
    assert '\n' not in message
    for text in named:
        assert text in message, (text, message)
    return message


SIZES = [(45, 61), (32, 37), (50, 50)]   # every image padded, none % 16


# -- a toy trainer (snapshots, guards, --out) --------------------------------
class ToyChain(chainer.Chain):
    """A linear layer with dropout (numpy's global RNG on CPU), reporting
    GAIN-like terms; ``bad_at``: the call whose ``am`` term is NaN (its
    gradient makes the weights NaN too); ``signal_at``: ``(call, signal,
    times)``, the call that sends ``signal`` ``times`` to this process;
    ``poison_at``: the call that makes a bias infinite behind a finite
    reported loss."""

    n_class, width, head_trained_by = 2, 1.0, []

    def __init__(self, n_in=3, bad_at=None, signal_at=None, poison_at=None):
        super().__init__()
        self.bad_at, self.signal_at, self.poison_at = (bad_at, signal_at,
                                                       poison_at)
        self.calls = 0
        with self.init_scope():
            self.l = L.Linear(n_in, 2)

    def forward(self, x, t):
        self.calls += 1
        if self.signal_at and self.calls == self.signal_at[0]:
            call, signum, times = (tuple(self.signal_at) + (1,))[:3]
            for _ in range(times):
                os.kill(os.getpid(), signum)
        if self.calls == self.poison_at:
            self.l.b.array[0] = np.inf
            chainer.report({'loss': 1.0}, self)
            return F.sum(self.l.W) * np.float32(0)
        y = F.dropout(self.l(x), 0.5)
        cl = F.mean_squared_error(y, t)
        am = F.sum(y) * (np.float32(np.nan) if self.calls == self.bad_at
                         else np.float32(0))
        loss = cl + am
        chainer.report({'cl': cl, 'am': am, 'loss': loss}, self)
        return loss


def toy_trainer(out, iterations=9, interval=3, seed=0, toy=None, resume=None,
                force=False, **kw):
    """A trainer of ``ToyChain(**toy)`` seeded by ``seed``, resuming as a
    training script would (``resume`` and ``force`` as the flags)."""
    np.random.seed(seed)
    model = ToyChain(**(toy or {}))
    resumed = None if force else snapshots.pick(str(out), resume)
    if resumed is not None:
        snapshots.abandon_later(str(out), resumed[0],
                                int(resumed[1]['updater/iteration']))
    rng = np.random.RandomState(1)
    data = [(rng.randn(3).astype(np.float32), rng.randn(2).astype(np.float32))
            for _ in range(10)]
    updater = StandardUpdater(SerialIterator(data, 4),
                              make_optimizer(model, 0.05))
    trainer = build_trainer(updater, (iterations, 'iteration'), str(out),
                            ['main/loss'], {}, log_interval=5,
                            snapshot_interval=interval, resumed=resumed,
                            **kw)
    return trainer, model


# -- model files -------------------------------------------------------------
def params(path):
    """``{name: array}`` of the parameters of a model file."""
    model, _ = load_model(path)
    return {n: p.array.copy() for n, p in model.namedparams()}


class Payload(object):
    """Unpickling it creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, 'w')


def poison(path, marker):
    """Add an object array holding a :class:`Payload` to an npz."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays['extensions/snapshot/payload'] = np.array([Payload(marker)],
                                                     dtype=object)
    with open(path, 'wb') as f:
        np.savez(f, **arrays)


# -- the GAIN objective ------------------------------------------------------
ONLY = dict(cl=0.0, am=0.0, seg=0.0, ext=0.0)


def numpy_softmax_cross_entropy(score, lbl, images):
    """Mean of -log softmax(score)[label] over the labelled pixels of
    ``images``: numpy, from the score maps ``(N, C, H, W)``."""
    total, count = 0.0, 0
    for i in images:
        s = score[i].astype(np.float64)
        log_p = s - s.max(axis=0) - np.log(np.exp(s - s.max(axis=0)).sum(0))
        ys, xs = np.nonzero(lbl[i] >= 0)
        total -= log_p[lbl[i][ys, xs], ys, xs].sum()
        count += len(ys)
    return total / count


def batch(n=3, size=32):
    """A random batch of ``n`` images (n_class 4), the first with pixel
    supervision."""
    x, label_map, labels, supervised = make_batch(n, size, N_CLASS, seed=0)
    supervised[0] = True
    return x, label_map, labels, supervised


# -- GPU against CPU (the tests marked gpu) -----------------------------------
# A batch of SIZE x SIZE images of N_CLASS classes, Adam at LR, the
# gradients of PARAMS compared.
N_CLASS = 4       # the thin_model fixture's


SIZE = 48


LR = 1e-3


# Parameters whose gradients are compared: the first and last trunk layers,
# the segmentation head and the (frozen, but differentiated) GAIN head.
PARAMS = ('/conv1_1/W', '/conv3_1/W', '/conv5_3/W', '/conv5_3/b', '/fc6/W',
          '/score_fr/W', '/score_pool3/W', '/upscore8/W', '/fc6_cl/W')


def gpu_device():
    """The chainer device of GPU 0, or skip."""
    cupy = pytest.importorskip('cupy')
    if not chainer.backends.cuda.available:
        pytest.skip('chainer sees no CUDA (cupy installed but unusable)')
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip('no GPU')
    except Exception as e:  # no driver, no device
        pytest.skip('no GPU: %s' % e)
    return chainer.get_device('@cupy:0')


def data(seed=0):
    """A batch of 3 images with 2, 3 and 1 labels; the first and last have
    pixel supervision (for GAIN_ext)."""
    x, lbl, labels, ext = make_batch(3, SIZE, n_class=N_CLASS, seed=seed)
    ext[:] = [True, False, True]
    return x, lbl, labels, ext


def to_cpu(a):
    """A numpy copy of an array or variable."""
    a = a.array if isinstance(a, chainer.Variable) else a
    return chainer.backend.CpuDevice().send(a)


def assert_close(actual, expected, rtol=1e-3, scale_tol=1e-4, name=''):
    """Element-wise within ``rtol`` plus ``scale_tol`` times the largest
    magnitude of ``expected`` (float32 sums in another order)."""
    actual, expected = to_cpu(actual), to_cpu(expected)
    assert actual.dtype == expected.dtype, name
    assert actual.shape == expected.shape, name
    atol = scale_tol * max(float(np.abs(expected).max()), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol,
                               err_msg=name)


def on_gpu(model, device):
    """A copy of ``model`` on ``device``."""
    gpu_model = copy.deepcopy(model)
    gpu_model.to_device(device)
    return gpu_model


def gain_grads(model, arrays, weights=None, loss_scale=None, **kwargs):
    """Loss value and parameter gradients of one GAIN forward/backward
    (train=False: no dropout, so CPU and GPU compute the same function)."""
    loss_fn = GAINLoss(model, weights=weights or dict(ext=1.0), **kwargs)
    model.cleargrads()
    with chainer.using_config('train', False):
        loss = loss_fn(*arrays)
    loss.backward(loss_scale=loss_scale)
    grads = {name: p.grad for name, p in model.namedparams()}
    return loss, grads


# -- the pipeline's jobs ------------------------------------------------------
#: A stand-in for a training script (its name starts with ``train_``): it
#: writes OUT/model.npz, its ``--tag`` followed by the contents of its
#: ``--modelfile`` and of the files under its ``--data-dir``, after
#: ``--sleep`` seconds; SIGTERM writes OUT/snapshot_iter_1.npz and ends it
#: (exit 143); it resumes from that snapshot unless ``--force``, saying so.
FAKE_TRAINING = r'''
import argparse, os, signal, sys, time
p = argparse.ArgumentParser()
for flag in ('--out', '--modelfile', '--data-dir', '--tag', '--device'):
    p.add_argument(flag, default='')
p.add_argument('--sleep', type=float, default=0)
p.add_argument('--force', action='store_true')
a = p.parse_args()
print('args:', ' '.join(sys.argv[1:]), flush=True)
os.makedirs(a.out, exist_ok=True)
snapshot = os.path.join(a.out, 'snapshot_iter_1.npz')
if os.path.exists(snapshot) and not a.force:
    print('resuming from', snapshot, flush=True)
    a.sleep = 0


def stop(signum, frame):
    open(snapshot, 'w').close()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, stop)
print('started', flush=True)
time.sleep(a.sleep)
data = a.tag + (open(a.modelfile).read() if a.modelfile else '')
for d, _, names in os.walk(a.data_dir or os.devnull):
    data += ''.join(open(os.path.join(d, n)).read() for n in sorted(names))
with open(os.path.join(a.out, 'model.npz'), 'w') as f:
    f.write(data)
'''


def fake_job(root, name, *args):
    """A :class:`pipeline.jobs.Job` of :data:`FAKE_TRAINING` writing
    ``root/out/name``."""
    from pipeline.jobs import Job
    script = os.path.join(str(root), 'train_fake.py')
    if not os.path.exists(script):
        with open(script, 'w') as f:
            f.write(FAKE_TRAINING)
    out = os.path.join(str(root), 'out')
    for d in (out, os.path.join(out, 'logs')):
        os.makedirs(d, exist_ok=True)
    return Job(name, script, os.path.join(out, name), list(args),
               os.path.join(out, 'logs', name + '.txt'))


def processes_holding(text, cwd=None):
    """The ids of the processes whose command line holds ``text`` (and
    whose working directory is ``cwd``)."""
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                if text.encode() in f.read() and (cwd is None or os.readlink(
                        '/proc/%s/cwd' % pid) == os.path.realpath(cwd)):
                    found.append(int(pid))
        except OSError:
            pass
    return found


def wait_for(condition, what, seconds=300):
    """Poll ``condition()`` until it holds; fail naming ``what`` after
    ``seconds`` (a bound against a hang, not a timing)."""
    import time
    end = time.time() + seconds
    while not condition():
        assert time.time() < end, 'waited in vain for ' + what
        time.sleep(0.2)
