"""models/precision.py: float16 layers over float32 weights."""
import copy

import chainer
import numpy as np
import pytest

from helpers import (PARAMS, batch, data, gain_grads, gpu_device, on_gpu,
                     relative_error, to_cpu)
from models.precision import RoundToHalf
from training.gain_loss import GAINLoss


def gain_step(model, precision, loss_scale=1.0, weights=None):
    """Loss and float32 parameter gradients (None where none flows) of one
    GAIN forward/backward of ``model`` computing in ``precision`` (test
    mode: no dropout)."""
    model = copy.deepcopy(model)
    model.precision = precision
    loss = GAINLoss(model, am_mode='joint', weights=weights or dict(ext=1.0))
    model.cleargrads()
    with chainer.using_config('train', False):
        value = loss(*batch())
    value.backward(loss_scale=loss_scale)
    return float(value.array), {
        n: None if p.grad is None else p.grad / loss_scale
        for n, p in model.namedparams()}


def test_round_to_half_rounds_values_and_gradients():
    x = chainer.Variable(np.array([1 / 3., 70000., 1e-9, -2.5], np.float32))
    y = RoundToHalf().apply((x,))[0]
    assert y.dtype == np.float32
    expected = np.array([1 / 3., 70000., 1e-9, -2.5]).astype(np.float16)
    np.testing.assert_array_equal(y.array, expected.astype(np.float32))
    assert np.isinf(y.array[1]) and y.array[2] == 0
    gy = np.array([1 / 3., 1., 1e5, 3.], np.float32)
    y.grad = gy
    y.backward()
    np.testing.assert_array_equal(
        x.grad, gy.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize('precision', ['mixed16', 'mixed16-emulated'])
def test_outputs_and_gradients_close_to_float32(thin_model, precision):
    """The methods keep float32 in and out, the weights and their
    gradients stay float32; outputs and the segmentation loss's gradients
    stay within float16's rounding of float32's (the classification
    stream's 2x2 maps at 32x32 flip ReLUs and max-pool winners between
    precisions: its gradients are only compared coarsely, in the GAIN
    step)."""
    model = copy.deepcopy(thin_model)
    model.precision = precision
    x = batch()[0]
    with chainer.using_config('train', False):
        for out, ref in ((model.segment(x), thin_model.segment(x)),
                         (model.classify(x), thin_model.classify(x))):
            assert out.dtype == np.float32
            assert relative_error(out.array, ref.array) < 1e-2
    seg = dict(cl=0.0, am=0.0, seg=1.0)
    _, g32 = gain_step(thin_model, 'float32', weights=seg)
    _, g16 = gain_step(thin_model, precision, loss_scale=128., weights=seg)
    for name, g in g32.items():
        if g is not None:
            assert g16[name].dtype == np.float32, name
            assert relative_error(g16[name], g) < 5e-2, name
    loss32, g32 = gain_step(thin_model, 'float32')
    loss16, g16 = gain_step(thin_model, precision, loss_scale=128.)
    assert abs(loss16 - loss32) < 1e-2 * abs(loss32)
    for name, g in g32.items():
        assert np.isfinite(g16[name]).all(), name
        assert relative_error(g16[name], g) < 0.5, name
    assert {p.dtype for p in model.params()} == {np.dtype(np.float32)}


@pytest.mark.gpu
def test_mixed16_matches_cpu(thin_model):
    """--dtype mixed16 on the GPU (float16 layers, cuBLAS) against float32
    on the CPU, with the tolerances of
    test_outputs_and_gradients_close_to_float32 above: the outputs within
    1%, the segmentation loss's gradients within 5%, the GAIN step's loss
    within 1% and its gradients finite and within 50% (a float16 rounding
    flips ReLUs and max-pool winners of the 3x3 maps)."""
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
