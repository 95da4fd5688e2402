"""--dtype mixed16: float16 layers over float32 weights with dynamic loss
scaling, its float32 emulation, and the fused GAIN erasure."""
import copy
import json
import os

import chainer
import chainer.functions as F
import numpy as np
import pytest
from chainer import gradient_check

from helpers import relative_error, run_script, write_voc
from bench.dtypes import check_step
from bench.random_batch import make_batch
from models import FCN8s
from models.fcn8s import CLASSIFICATION_HEAD
from models.gain import soft_erase
from models.precision import PRECISIONS, RoundToHalf
from runtime import flags
from runtime.model_files import load_model, save_model
from training.gain_loss import GAINLoss
from training.mixed_precision import LossScale, loss_scale, set_precision
from training.trainer import make_optimizer

N_CLASS = 4      # the thin_model fixture's


def batch(n=3, size=32):
    x, label_map, labels, supervised = make_batch(n, size, N_CLASS, seed=0)
    supervised[0] = True
    return x, label_map, labels, supervised


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


# ------------------------------------------------------------ soft erasure

def test_soft_erase_is_mask_then_erase():
    """One function, the numbers of the formula I* = I - T(A) I with
    T(A) = 1 / (1 + exp(-omega (A - sigma))), computed here in float64."""
    rng = np.random.RandomState(0)
    x = rng.normal(0, 60, (2, 3, 5, 7)).astype(np.float32)
    a = rng.uniform(0, 1, (2, 5, 7)).astype(np.float32)
    y = soft_erase(x, a, sigma=0.4, omega=8.0)
    t = 1 / (1 + np.exp(-8.0 * (a.astype(np.float64) - 0.4)))
    np.testing.assert_allclose(y.array, x - t[:, None] * x, rtol=1e-5,
                               atol=1e-4)
    assert y.dtype == np.float32


def test_soft_erase_gradients_match_central_differences():
    rng = np.random.RandomState(1)
    x = rng.normal(0, 1, (2, 3, 4, 5))
    a = rng.uniform(0, 1, (2, 4, 5))
    gy = rng.normal(0, 1, x.shape)
    gradient_check.check_backward(
        lambda x, a: soft_erase(x, a, sigma=0.5, omega=10.0), (x, a), gy,
        eps=1e-6, atol=1e-7, rtol=1e-6, dtype=np.float64)


def test_soft_erase_backward_is_not_differentiated_silently():
    """The backward is not differentiable: asking for it fails loudly
    instead of giving a zero second derivative."""
    x = chainer.Variable(np.ones((1, 3, 2, 2), np.float32))
    a = chainer.Variable(np.full((1, 2, 2), 0.3, np.float32))
    gx, = chainer.grad([F.sum(soft_erase(x, a) ** 2)], [a],
                       enable_double_backprop=True)
    with pytest.raises(NotImplementedError):
        F.sum(gx).backward()


# ----------------------------------------------------------- the precisions

def test_flag_offers_every_precision():
    action = {a.dest: a for a in flags.parser('x', iterations=1)._actions}[
        'dtype']
    assert tuple(action.choices) == PRECISIONS
    assert action.default == 'float32'


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


def test_mixed16_step_computes_in_float16_without_float64(thin_model):
    model = copy.deepcopy(thin_model)
    loss = GAINLoss(model, am_mode='per-class', weights=dict(ext=1.0))
    opt = make_optimizer(loss, 1e-3, model.head_links())
    set_precision(model, opt, 'mixed16')
    result = check_step(lambda: opt.update(loss, *batch()), loss, opt)
    assert result['float64'] == []
    assert 'float16' in result['function_dtypes']
    for key in ('param_dtypes', 'grad_dtypes', 'optimizer_state_dtypes'):
        assert result[key] == ['float32'], (key, result[key])


# ----------------------------------------------------------- loss scaling

def test_overflowing_step_is_skipped_and_the_scale_halved(thin_model):
    """A loss scale past float16's range makes the gradients inf: the
    update is skipped (every weight bit-identical) and the scale halved;
    the next step updates, the frozen head still untouched."""
    model = copy.deepcopy(thin_model)
    loss = GAINLoss(model, am_mode='joint')
    opt = make_optimizer(loss, 1e-3, model.head_links())
    set_precision(model, opt, 'mixed16-emulated')
    assert loss_scale(opt) == 1.0
    before = {n: p.array.copy() for n, p in model.namedparams()}
    opt._loss_scale = 2.0 ** 40
    with pytest.warns(UserWarning, match='Non finite'):
        opt.update(loss, *batch())
    assert all(np.array_equal(p.array, before[n])
               for n, p in model.namedparams())
    assert loss_scale(opt) == 65504      # halved, capped at float16's max
    opt._loss_scale = 256.
    opt.update(loss, *batch())
    moved = {n for n, p in model.namedparams()
             if not np.array_equal(p.array, before[n])}
    assert moved and not any(n.split('/')[1] in CLASSIFICATION_HEAD
                             for n in moved)
    assert '/conv1_1/W' in moved
    assert all(np.isfinite(p.array).all() for p in model.params())


def test_loss_scale_survives_a_snapshot(tmp_path, thin_model):
    def optimizer():
        opt = make_optimizer(GAINLoss(copy.deepcopy(thin_model)), 1e-3)
        opt.loss_scaling()
        return opt

    saved = optimizer()
    saved._loss_scale, saved._loss_scaling_isnan_ever = 512., True
    path = str(tmp_path / 'snapshot.npz')
    chainer.serializers.save_npz(path, LossScale(saved))
    loaded = optimizer()
    chainer.serializers.load_npz(path, LossScale(loaded))
    assert loss_scale(loaded) == 512.
    assert loaded._loss_scaling_isnan_ever is True


# ------------------------------------------------------------- the scripts

def test_mixed16_run_writes_float32_weights(tmp_path, monkeypatch, capsys):
    """train_classifier and train_GAIN with --dtype: model.npz holds
    float32 weights, the frozen parts bit-identical to their input, the
    others moved; config.json and the log record the precision."""
    voc = str(tmp_path / 'VOC')
    write_voc(voc, {'train': 4, 'val': 2}, n_class=21, size=(40, 48))
    np.random.seed(0)
    start = str(tmp_path / 'start.npz')
    save_model(start, FCN8s(21, 1 / 16.))
    common = ['--dataset', 'voc', '--data-dir', voc, '--batch-size', 2,
              '--dtype', 'mixed16-emulated']
    cls, gain = str(tmp_path / 'cls'), str(tmp_path / 'gain')
    code, err = run_script('train_classifier', common + [
        '--out', cls, '--modelfile', start, '--iterations', 3], monkeypatch,
        capsys)
    assert code == 0, err
    code, err = run_script('train_GAIN', common + [
        '--out', gain, '--modelfile', cls + '/model.npz', '--iterations', 3,
        '--am-mode', 'joint', '--attention-interval', 3], monkeypatch, capsys)
    assert code == 0, err
    first = dict(load_model(start)[0].namedparams())
    head = dict(load_model(cls + '/model.npz')[0].namedparams())
    last = dict(load_model(gain + '/model.npz')[0].namedparams())
    for name, p in last.items():
        assert p.dtype == np.float32, name
        in_head = name.split('/')[1] in CLASSIFICATION_HEAD
        assert np.array_equal(head[name].array, first[name].array) != in_head
        assert np.array_equal(p.array, head[name].array) == in_head, name
    for out in (cls, gain):
        assert json.load(open(os.path.join(out, 'config.json')))[
            'dtype'] == 'mixed16-emulated'
        log = json.load(open(os.path.join(out, 'log')))
        assert log[-1]['loss_scale'] == 8.0    # 1, doubled at each step
