"""models/precision.py: float16 layers over float32 weights."""
import copy
from unittest import mock

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
import pytest

from helpers import (batch, data, gpu_device, on_gpu, relative_error,
                     thin_fcn8s, to_cpu)
from models import fcn8s
from models.precision import RoundToHalf
from training.gain_loss import GAINLoss


#: float16's unit roundoff: a rounding to float16 changes a value by a
#: factor ``1 + d``, ``|d| <= U`` (a normal number; see models/precision.py).
U = 2.0 ** -11
#: Perturbed float32 runs that make the yardstick, and the factor on the
#: largest of their errors (see :func:`yardstick`).
DRAWS, FACTOR = 10, 4
#: The GAIN steps compared: the segmentation loss alone, and every term.
STEPS = (dict(cl=0.0, am=0.0, seg=1.0), dict(ext=1.0))


class Perturbed(chainer.FunctionNode):
    """``x`` rounded to float16 (``rng`` None) or jittered, ``x (1 + d)``
    with ``d ~ U(-U, U)`` drawn for each value from ``rng``: a change as
    large as float16's rounding, at random; its gradient is perturbed the
    same way."""

    def __init__(self, rng=None):
        self.rng = rng

    def forward(self, inputs):
        x, = inputs
        if self.rng is None:
            return x.astype(np.float16).astype(x.dtype),
        return (x * (1 + self.rng.uniform(-U, U, x.shape))).astype(x.dtype),

    def backward(self, indexes, grad_outputs):
        return Perturbed(self.rng).apply(grad_outputs)


def perturbed_layers(rng=None):
    """A stand-in for ``models.precision.apply_link``, written apart from
    it: a layer computed in float32 with its input, weights and output
    (and so their gradients) :class:`Perturbed`, the values a mixed
    precision rounds."""
    def perturb(v):
        return None if v is None else Perturbed(rng).apply((v,))[0]

    def apply_link(link, x, precision='float32', pad=None):
        x, W, b = perturb(x), perturb(link.W), perturb(link.b)
        if isinstance(link, L.Deconvolution2D):
            y = F.deconvolution_2d(x, W, b, link.stride, link.pad,
                                   link.outsize)
        elif isinstance(link, L.Convolution2D):
            y = F.convolution_2d(x, W, b, link.stride,
                                 link.pad if pad is None else pad)
        else:
            y = F.linear(x, W, b)
        return perturb(y)
    return apply_link


def gain_step(model, arrays, weights, loss_scale=1.0):
    """``{'loss': value, 'segment': scores, 'classify': logits, parameter
    name: float32 gradient}`` (numpy, no entry where no gradient flows) of
    one GAIN forward/backward of ``model`` (test mode: no dropout)."""
    loss = GAINLoss(model, am_mode='joint', weights=weights)
    model.cleargrads()
    with chainer.using_config('train', False):
        value = loss(*arrays)
        with chainer.no_backprop_mode():
            out = dict(segment=model.segment(arrays[0]),
                       classify=model.classify(arrays[0]), loss=value)
    value.backward(loss_scale=loss_scale)
    for name, p in model.namedparams():
        if p.grad is not None:
            assert p.grad.dtype == np.float32, name
            out[name] = to_cpu(p.grad) / loss_scale
    for key in ('segment', 'classify', 'loss'):
        assert out[key].dtype == np.float32, key
        out[key] = to_cpu(out[key])
    return out


def errors(run, reference):
    """Relative error of each entry of ``run`` against ``reference``."""
    assert run.keys() == reference.keys()
    return {k: relative_error(run[k], reference[k]) for k in reference}


def yardstick(model, arrays, weights):
    """``(float32 run, bounds)``: the errors float16's rounding may make,
    from ``DRAWS`` float32 runs of the same step jittered at the values
    float16 rounds (:func:`perturbed_layers`).

    A rounding to nearest is such a perturbation (``|d| <= U``), so its
    error is one more draw of the same kind; the bound of each entry is
    ``FACTOR`` times the largest of its ``DRAWS`` errors. The draws are
    heavy-tailed: a ReLU or a max-pool winner of the classification
    stream's 2x2 maps flips in some of them, and a GAIN step's trunk
    gradient then errs by 0.1 to 0.2 against 0.01 (so those bounds are
    loose on purpose: float16 may flip them too). In 4000 resamplings of
    60 draws, one more draw exceeded 4x the largest of 10 on some entry in
    under 1% (0.4% with every term, none with the segmentation loss).
    """
    ref = gain_step(copy.deepcopy(model), arrays, weights)
    rng = np.random.RandomState(0)
    largest = {}
    for _ in range(DRAWS):
        with mock.patch.object(fcn8s, 'apply_link', perturbed_layers(rng)):
            run = gain_step(copy.deepcopy(model), arrays, weights)
        for k, e in errors(run, ref).items():
            largest[k] = max(largest.get(k, 0.0), e)
    return ref, {k: FACTOR * e for k, e in largest.items()}


@pytest.fixture(scope='module')
def yardsticks():
    """The thin model (as conftest's) and :func:`yardstick` of each of
    ``STEPS`` on :func:`helpers.batch`, made once for both precisions."""
    model = thin_fcn8s()
    return model, [yardstick(model, batch(), w) for w in STEPS]


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
def test_outputs_and_gradients_close_to_float32(yardsticks, precision):
    """The methods keep float32 in and out, the weights and their
    gradients stay float32; the outputs, the loss and every parameter's
    gradient of a GAIN step (the segmentation loss alone, and every term)
    stay within float16's rounding of float32's (:func:`yardstick`), and
    the emulation is float16's rounding of the same layers and nothing
    else."""
    thin_model, steps = yardsticks
    model = copy.deepcopy(thin_model)
    model.precision = precision
    for weights, (ref, bound) in zip(STEPS, steps):
        run = gain_step(model, batch(), weights, loss_scale=128.)
        for k, e in errors(run, ref).items():
            assert e <= bound[k], (k, e, bound[k])
        if precision == 'mixed16-emulated':
            with mock.patch.object(fcn8s, 'apply_link', perturbed_layers()):
                rounded = gain_step(copy.deepcopy(thin_model), batch(),
                                    weights, loss_scale=128.)
            # The same roundings in float32: what may differ is float32's
            # own rounding, 2^-24 against float16's 2^-11.
            for k, e in errors(run, rounded).items():
                assert e <= bound[k] * 2.0 ** -13, (k, e)
    assert {p.dtype for p in model.params()} == {np.dtype(np.float32)}


@pytest.mark.gpu
def test_mixed16_matches_cpu(thin_model):
    """--dtype mixed16 on the GPU (float16 layers, cuBLAS) against float32
    on the CPU, within the bounds of
    test_outputs_and_gradients_close_to_float32 above (:func:`yardstick`,
    on this batch): the outputs, the loss and the gradients of both GAIN
    steps."""
    device = gpu_device()
    gpu_model = on_gpu(thin_model, device)
    gpu_model.precision = 'mixed16'
    arrays = data()
    gpu_arrays = [device.send(a) for a in arrays]
    for weights in STEPS:
        ref, bound = yardstick(thin_model, arrays, weights)
        run = gain_step(gpu_model, gpu_arrays, weights, loss_scale=128.)
        for k, e in errors(run, ref).items():
            assert e <= bound[k], (k, e, bound[k])
