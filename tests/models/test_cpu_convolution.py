"""models/cpu_convolution.py: the fast CPU kernels against chainer's."""
import collections

import chainer
import chainer.functions as F
import numpy as np
import pytest
from chainer import gradient_check

from models import cpu_convolution
from training.losses import SegmentationLoss


# (batch, in channels, out channels, H, W, kernel, stride, pad): strides
# 1, 2 and 8, pads 0, 1, 4 and 100, kernels 1, 3, 4, 7 and 16, non-square
# images, batches of 1 and 3. Between them they take every branch of the
# kernels (test_cases_take_every_branch).
CONVOLUTIONS = [
    (1, 3, 4, 9, 7, 3, 1, 1),
    (3, 2, 5, 8, 11, 1, 1, 0),
    (3, 4, 3, 10, 7, 4, 2, 1),
    (1, 3, 2, 6, 5, 7, 1, 100),
    (3, 2, 3, 20, 18, 16, 8, 0),
    (3, 5, 4, 13, 9, 7, 2, 0),
    (1, 3, 4, 12, 16, 1, 2, 0),
    (3, 2, 2, 7, 9, 3, 2, 100),
    (3, 6, 8, 5, 6, 3, 1, 0),
    (3, 4, 2, 16, 13, 16, 8, 4),
]


DECONVOLUTIONS = [
    (1, 3, 4, 5, 7, 3, 1, 1),
    (3, 4, 3, 6, 5, 4, 2, 1),
    (3, 2, 3, 4, 3, 16, 8, 0),
    (1, 5, 2, 4, 6, 7, 1, 0),
    (3, 3, 2, 6, 7, 1, 1, 0),
    (1, 2, 3, 104, 101, 7, 2, 100),
    (3, 6, 2, 3, 4, 7, 1, 0),
    (1, 2, 3, 5, 4, 3, 2, 0),
]


FUNCTIONS = {'conv': F.convolution_2d, 'deconv': F.deconvolution_2d}


# (kind, case, keyword arguments): the sizes above, and chainer's
# cover_all, also what the gradient of a deconvolution with an output size
# between two input sizes uses.
CASES = ([('conv', c, {}) for c in CONVOLUTIONS]
         + [('deconv', c, {}) for c in DECONVOLUTIONS]
         + [('conv', (3, 2, 3, 9, 8, 3, 2, 1), dict(cover_all=True)),
            ('deconv', (3, 2, 2, 5, 5, 3, 2, 0), dict(outsize=(10, 10)))])


BRANCHES = ('_conv_by_columns', '_conv_by_phase', '_grad_w_by_columns',
            '_grad_w_by_phase', '_subpixel', '_col2im')


TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


def inputs(kind, case, dtype, seed=0):
    n, c_in, c_out, h, w, k, stride, pad = case
    rng = np.random.RandomState(seed)
    w_shape = (c_out, c_in, k, k) if kind == 'conv' else (c_in, c_out, k, k)
    return tuple(rng.normal(0, 1, s).astype(dtype)
                 for s in ((n, c_in, h, w), w_shape, (c_out,)))


def forward_backward(kind, case, kwargs, arrays):
    """``y`` and the gradients of ``x``, ``W`` and ``b`` for a random
    ``gy``, with the kernels in place now."""
    stride, pad = case[6:]
    x, W, b = (chainer.Variable(a.copy()) for a in arrays)
    y = FUNCTIONS[kind](x, W, b, stride, pad, **kwargs)
    y.grad = np.random.RandomState(1).normal(0, 1, y.shape).astype(y.dtype)
    y.backward()
    return [y.array, x.grad, W.grad, b.grad]


def double_backward(kind, case, kwargs, arrays):
    """Gradients of ``|dL/dx|^2 + |dL/dW|^2`` with ``L = sum(c * y^2)``
    (first derivatives through ``chainer.grad``, so the second backward
    goes through the convolution's gradients)."""
    stride, pad = case[6:]
    x, W, b = (chainer.Variable(a.copy()) for a in arrays)
    y = FUNCTIONS[kind](x, W, b, stride, pad, **kwargs)
    c = np.random.RandomState(2).normal(0, 1, y.shape).astype(y.dtype)
    gx, gW = chainer.grad([F.sum(c * y * y)], [x, W],
                          enable_double_backprop=True)
    (F.sum(gx * gx) + F.sum(gW * gW)).backward()
    return [gx.array, gW.array, x.grad, W.grad, b.grad]


def assert_close(actual, expected, rtol, what):
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.shape == e.shape and a.dtype == e.dtype, (what, i)
        assert np.abs(e).max() > 0, (what, i)
        np.testing.assert_allclose(a, e, rtol=rtol,
                                   atol=rtol * np.abs(e).max(),
                                   err_msg='%s, array %d' % (what, i))


def test_models_install_the_kernels():
    assert cpu_convolution.installed()
    with cpu_convolution.chainer_kernels():
        assert not cpu_convolution.installed()
    assert cpu_convolution.installed()


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('kind,case,kwargs', CASES)
def test_output_and_gradients_equal_chainers(kind, case, kwargs, dtype):
    """y and the gradients of x, W and b: rel 1e-5 (float32), 1e-12
    (float64) of chainer's kernels."""
    arrays = inputs(kind, case, dtype)
    fast = forward_backward(kind, case, kwargs, arrays)
    with cpu_convolution.chainer_kernels():
        expected = forward_backward(kind, case, kwargs, arrays)
    assert_close(fast, expected, TOLERANCE[dtype], (kind, case))


@pytest.mark.parametrize('kind,case,kwargs', CASES)
def test_double_backprop_equals_chainers(kind, case, kwargs):
    arrays = inputs(kind, case, np.float32)
    fast = double_backward(kind, case, kwargs, arrays)
    with cpu_convolution.chainer_kernels():
        expected = double_backward(kind, case, kwargs, arrays)
    assert_close(fast, expected, 1e-5, (kind, case))


def test_cases_take_every_branch(monkeypatch):
    """The cases above run each way the kernels compute, and none of them
    falls back to chainer's code (spies count the calls)."""
    calls = collections.Counter()

    def spy(name, function):
        def counted(*args):
            calls[name] += 1
            return function(*args)
        return counted
    for name in BRANCHES:
        monkeypatch.setattr(cpu_convolution, name,
                            spy(name, getattr(cpu_convolution, name)))
    monkeypatch.setattr(cpu_convolution, '_ORIGINAL', {
        name: (cls, spy('chainer ' + name, kernel)) for name, (cls, kernel)
        in cpu_convolution._ORIGINAL.items()})
    for kind, case, kwargs in CASES:
        forward_backward(kind, case, kwargs, inputs(kind, case, np.float32))
    assert set(calls) == set(BRANCHES), calls


@pytest.mark.parametrize('kind,case', [
    ('conv', (2, 3, 2, 9, 8, 4, 2, 1)),
    ('deconv', (2, 2, 3, 4, 5, 4, 2, 1)),
    ('conv', (2, 2, 2, 18, 17, 16, 8, 3)),
    ('deconv', (1, 2, 2, 3, 2, 16, 8, 0)),
])
def test_gradients_match_central_differences(kind, case):
    """First and second derivatives, float64, against finite
    differences."""
    x, W, b = inputs(kind, case, np.float64)
    stride, pad = case[6:]

    def f(x, W, b):
        return FUNCTIONS[kind](x, W, b, stride, pad)
    rng = np.random.RandomState(3)
    y_shape = f(x, W, b).shape
    gy, ggx, ggW, ggb = (rng.normal(0, 1, s) for s in
                         (y_shape, x.shape, W.shape, b.shape))
    gradient_check.check_backward(f, (x, W, b), gy, eps=1e-6, atol=1e-7,
                                  rtol=1e-6, dtype=np.float64)
    gradient_check.check_double_backward(f, (x, W, b), gy, (ggx, ggW, ggb),
                                         eps=1e-6, atol=1e-7, rtol=1e-6,
                                         dtype=np.float64)


@pytest.mark.parametrize('dtype,kwargs', [
    (np.float16, {}),
    (np.float32, dict(dilate=2)),
    (np.float32, dict(groups=2)),
])
def test_other_convolutions_run_chainers_code(dtype, kwargs, monkeypatch):
    """float16, dilated and grouped convolutions: chainer's own kernels,
    none of the fast branches."""
    calls = collections.Counter()
    for name in BRANCHES:
        monkeypatch.setattr(cpu_convolution, name,
                            lambda *a, _name=name: calls.update([_name]))
    rng = np.random.RandomState(0)
    x = rng.normal(0, 1, (2, 4, 9, 8)).astype(dtype)
    W = rng.normal(0, 1, (4, 4 // kwargs.get('groups', 1), 3, 3)).astype(
        dtype)
    for f in (F.convolution_2d, F.deconvolution_2d):
        xv, Wv = chainer.Variable(x.copy()), chainer.Variable(W.copy())
        y = f(xv, Wv, None, 1, 1, **kwargs)
        F.sum(y * y).backward()
        with cpu_convolution.chainer_kernels():
            xr, Wr = chainer.Variable(x.copy()), chainer.Variable(W.copy())
            yr = f(xr, Wr, None, 1, 1, **kwargs)
            F.sum(yr * yr).backward()
        for a, e in ((y.array, yr.array), (xv.grad, xr.grad),
                     (Wv.grad, Wr.grad)):
            np.testing.assert_array_equal(a, e)
    assert not calls


def test_segmentation_step_equals_chainers(thin_model):
    """One FCN8s forward/backward of the segmentation and classification
    losses (conv1_1 padded by 100 and by 1, the upscore deconvolutions):
    the loss and every parameter gradient within
    float32 rounding of chainer's kernels."""
    rng = np.random.RandomState(0)
    x = rng.normal(0, 60, (3, 3, 40, 36)).astype(np.float32)
    label_map = rng.randint(-1, 4, (3, 40, 36)).astype(np.int32)
    labels = np.ones((3, 3), np.int32)

    def step():
        thin_model.cleargrads()
        with chainer.using_config('train', False):
            loss = SegmentationLoss(thin_model, cls_weight=1.0)(
                x, label_map, labels)
        loss.backward()
        return [loss.array] + [p.grad.copy() for _, p in
                               sorted(thin_model.namedparams())
                               if p.grad is not None]
    fast = step()
    with cpu_convolution.chainer_kernels():
        expected = step()
    assert len(fast) == len(expected) > 20
    assert_close(fast, expected, 1e-4, 'segmentation step')
