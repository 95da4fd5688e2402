"""GPU against CPU on the same weights (segment, classify, Grad-CAM, one
GAIN step), and no float64 array inside a GAIN step (on CPU always, on GPU
when there is one).

The GPU tests are marked ``gpu`` and skipped without CuPy or a usable GPU.
"""
import copy
import os

# Strict float32 in cuDNN/cuBLAS on Ampere and newer (no TF32), so that the
# tolerances below compare float32 with float32. Must precede CUDA's start.
os.environ.setdefault('NVIDIA_TF32_OVERRIDE', '0')

import chainer  # NOQA: E402
import numpy as np  # NOQA: E402
import pytest  # NOQA: E402

from helpers import relative_error  # NOQA: E402
from bench.dtypes import check_step  # NOQA: E402
from bench.random_batch import make_batch  # NOQA: E402
from models import grad_cam  # NOQA: E402
from models.fcn8s import CLASSIFICATION_HEAD  # NOQA: E402
from models.gain import soft_erase  # NOQA: E402
from training.gain_loss import AM_MODES, CAM_GRADS, GAINLoss  # NOQA: E402
from training.mixed_precision import set_precision  # NOQA: E402
from training.trainer import make_optimizer  # NOQA: E402

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


# ---------------------------------------------------------------- GPU = CPU

@pytest.mark.gpu
def test_segment_and_classify_match_cpu(thin_model):
    device = gpu_device()
    gpu_model = on_gpu(thin_model, device)
    x = data()[0]
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        seg_cpu, cls_cpu = thin_model.segment(x), thin_model.classify(x)
        xg = device.send(x)
        seg_gpu, cls_gpu = gpu_model.segment(xg), gpu_model.classify(xg)
    assert isinstance(seg_gpu.array, device.xp.ndarray)
    assert seg_gpu.dtype == np.float32 and cls_gpu.dtype == np.float32
    assert_close(seg_gpu, seg_cpu, name='segment')
    assert_close(cls_gpu, cls_cpu, name='classify')


@pytest.mark.gpu
@pytest.mark.parametrize('targets', ['multi-hot', 'index'])
def test_grad_cam_matches_cpu(thin_model, targets):
    device = gpu_device()
    gpu_model = on_gpu(thin_model, device)
    x, _, labels, _ = data()
    t = labels if targets == 'multi-hot' else labels.argmax(axis=1)
    with chainer.using_config('train', False):
        cam_cpu = grad_cam(thin_model, x, t)
        cam_gpu = grad_cam(gpu_model, device.send(x), device.send(t))
    assert cam_gpu.shape == (3, SIZE, SIZE) and cam_gpu.dtype == np.float32
    assert float(cam_cpu.array.max()) > 0
    assert_close(cam_gpu, cam_cpu, scale_tol=1e-3, name='grad_cam')


@pytest.mark.gpu
@pytest.mark.parametrize('am_mode,cam_grad', [
    ('joint', 'activations'), ('joint', 'full'), ('joint', 'mask-only'),
    ('per-class', 'activations')])
def test_gain_step_matches_cpu(thin_model, am_mode, cam_grad):
    device = gpu_device()
    gpu_model = on_gpu(thin_model, device)
    arrays = data()
    loss_cpu, g_cpu = gain_grads(thin_model, arrays, am_mode=am_mode,
                                 cam_grad=cam_grad)
    loss_gpu, g_gpu = gain_grads(gpu_model, [device.send(a) for a in arrays],
                                 am_mode=am_mode, cam_grad=cam_grad)
    assert loss_gpu.dtype == np.float32
    np.testing.assert_allclose(float(loss_gpu.array), float(loss_cpu.array),
                               rtol=1e-4)
    assert set(g_gpu) == set(g_cpu)
    for name in PARAMS:
        assert g_cpu[name] is not None and np.abs(g_cpu[name]).max() > 0, \
            name
        assert isinstance(g_gpu[name], device.xp.ndarray), name
        assert_close(g_gpu[name], g_cpu[name], rtol=2e-3, scale_tol=1e-3,
                     name=name)


@pytest.mark.gpu
def test_gain_update_matches_cpu(thin_model):
    """One Adam update of the GAIN objective moves the GPU copy like the
    CPU model (the first Adam step is about lr * sign(grad), so a sign
    flip of a near-zero gradient may differ by at most 2 lr)."""
    device = gpu_device()
    gpu_model = on_gpu(thin_model, device)
    arrays = data()
    for model, batch in ((thin_model, arrays),
                         (gpu_model, [device.send(a) for a in arrays])):
        loss = GAINLoss(model, am_mode='joint')
        opt = make_optimizer(loss, LR, model.links_named(CLASSIFICATION_HEAD))
        with chainer.using_config('train', False):
            opt.update(loss, *batch)
    cpu, gpu = dict(thin_model.namedparams()), dict(gpu_model.namedparams())
    for name in PARAMS:
        a, b = to_cpu(gpu[name].array), cpu[name].array
        assert np.isfinite(a).all(), name
        np.testing.assert_allclose(a, b, rtol=0, atol=2.01 * LR,
                                   err_msg=name)


@pytest.mark.gpu
def test_soft_erase_matches_cpu():
    """The fused erasure's CUDA kernels against its numpy code."""
    device = gpu_device()
    rng = np.random.RandomState(0)
    x = rng.normal(0, 60, (3, 3, SIZE, SIZE)).astype(np.float32)
    a = rng.uniform(0, 1, (3, SIZE, SIZE)).astype(np.float32)
    gy = rng.normal(0, 1, x.shape).astype(np.float32)
    outputs = []
    for arrays in ((x, a, gy), [device.send(v) for v in (x, a, gy)]):
        xv, av = chainer.Variable(arrays[0]), chainer.Variable(arrays[1])
        y = soft_erase(xv, av, sigma=0.4, omega=10.0)
        y.grad = arrays[2]
        y.backward()
        outputs.append((y.array, xv.grad, av.grad))
    for cpu, gpu, name in zip(outputs[0], outputs[1], ('y', 'gx', 'ga')):
        assert isinstance(gpu, device.xp.ndarray), name
        assert_close(gpu, cpu, rtol=1e-5, scale_tol=1e-5, name=name)


@pytest.mark.gpu
def test_mixed16_matches_cpu(thin_model):
    """--dtype mixed16 on the GPU (float16 layers, cuBLAS) against float32
    on the CPU, with the tolerances of tests/test_mixed_precision.py: the
    outputs within 1%, the segmentation loss's gradients within 5%, the
    GAIN step's loss within 1% and its gradients finite and within 50% (a
    float16 rounding flips ReLUs and max-pool winners of the 3x3 maps)."""
    device = gpu_device()
    gpu_model = on_gpu(thin_model, device)
    gpu_model.precision = 'mixed16'
    arrays = data()
    gpu_arrays = [device.send(a) for a in arrays]
    with chainer.using_config('train', False), chainer.no_backprop_mode():
        for method in ('segment', 'classify'):
            out = getattr(gpu_model, method)(gpu_arrays[0])
            ref = getattr(thin_model, method)(arrays[0])
            assert out.dtype == np.float32
            assert relative_error(to_cpu(out), ref.array) < 1e-2, method
    for weights, loss_tol, grad_tol in ((dict(cl=0.0, am=0.0, seg=1.0),
                                         1e-2, 5e-2),
                                        (dict(ext=1.0), 1e-2, 0.5)):
        loss_cpu, g_cpu = gain_grads(thin_model, arrays, weights=weights,
                                     am_mode='joint')
        loss_gpu, g_gpu = gain_grads(gpu_model, gpu_arrays, weights=weights,
                                     am_mode='joint', loss_scale=128.)
        assert abs(float(loss_gpu.array) - float(loss_cpu.array)) < \
            loss_tol * abs(float(loss_cpu.array))
        for name in PARAMS:
            if g_cpu[name] is None:
                continue
            g = to_cpu(g_gpu[name]) / 128.
            assert g.dtype == np.float32 and np.isfinite(g).all(), name
            assert relative_error(g, g_cpu[name]) < grad_tol, name


# ------------------------------------------------------------ float64 check

def _check_no_float64(model, arrays, am_mode, cam_grad, am_score='sigmoid'):
    loss = GAINLoss(model, am_mode=am_mode, cam_grad=cam_grad,
                    am_score=am_score, weights=dict(ext=1.0))
    opt = make_optimizer(loss, LR, model.links_named(CLASSIFICATION_HEAD))
    result = check_step(lambda: opt.update(loss, *arrays), loss, opt)
    assert result['float64'] == [], result['float64']
    assert set(result['function_dtypes']) <= {'float32', 'int32', 'bool'}, \
        result['function_dtypes']
    for key in ('param_dtypes', 'grad_dtypes', 'optimizer_state_dtypes'):
        assert result[key] == ['float32'], (key, result[key])
    # The recorder did see the whole step (classification stream, CAM,
    # attention mining, segmentation and their backward).
    assert result['function_calls'] > 300


@pytest.mark.parametrize('am_mode', AM_MODES)
@pytest.mark.parametrize('cam_grad', CAM_GRADS)
def test_no_float64_in_gain_step_cpu(thin_model, am_mode, cam_grad):
    _check_no_float64(thin_model, data(), am_mode, cam_grad)


def test_no_float64_in_gain_step_cpu_softmax_scores(thin_model):
    _check_no_float64(thin_model, data(), 'per-class', 'activations',
                      am_score='softmax')


def test_dtype_recorder_reports_float64():
    """The recorder does flag a float64 array (so an empty report means
    something)."""
    from bench.dtypes import DtypeRecorder
    import chainer.functions as F
    x = chainer.Variable(np.ones((2, 3), np.float64))
    recorder = DtypeRecorder()
    with recorder:
        y = F.sum(F.relu(x) * 2)
        y.backward()
    assert recorder.offending('float64')
    assert any(s.startswith('ReLU (forward)') for s in
               recorder.offending('float64'))
    assert any('(backward)' in s for s in recorder.offending('float64'))


@pytest.mark.gpu
@pytest.mark.parametrize('am_mode,cam_grad', [
    ('joint', 'activations'), ('joint', 'full'), ('per-class', 'mask-only')])
def test_no_float64_in_gain_step_gpu(thin_model, am_mode, cam_grad):
    device = gpu_device()
    gpu_model = on_gpu(thin_model, device)
    _check_no_float64(gpu_model, [device.send(a) for a in data()], am_mode,
                      cam_grad)


@pytest.mark.gpu
def test_mixed16_update_on_gpu(thin_model):
    """A mixed16 Adam update with loss scaling on the GPU: float16 in the
    layers, no float64, float32 weights, gradients and Adam state; the
    trunk moves, the frozen head does not."""
    device = gpu_device()
    gpu_model = on_gpu(thin_model, device)
    loss = GAINLoss(gpu_model, am_mode='per-class', weights=dict(ext=1.0))
    opt = make_optimizer(loss, LR, gpu_model.head_links())
    set_precision(gpu_model, opt, 'mixed16')
    opt._loss_scale = 128.          # past the first steps' growth from 1
    before = {n: to_cpu(p.array) for n, p in gpu_model.namedparams()}
    result = check_step(lambda: opt.update(
        loss, *[device.send(a) for a in data()]), loss, opt)
    assert result['float64'] == [] and 'float16' in result['function_dtypes']
    for key in ('param_dtypes', 'grad_dtypes', 'optimizer_state_dtypes'):
        assert result[key] == ['float32'], (key, result[key])
    for name, p in gpu_model.namedparams():
        after = to_cpu(p.array)
        assert np.isfinite(after).all(), name
        frozen = name.split('/')[1] in CLASSIFICATION_HEAD
        assert np.array_equal(after, before[name]) == frozen or \
            not before[name].any(), name
