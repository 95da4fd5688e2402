"""training/mixed_precision.py: --dtype mixed16 with loss scaling."""
import copy
import json
import os

import chainer
import numpy as np
import pytest

from bench.dtypes import check_step
from helpers import (LR, batch, data, gpu_device, on_gpu, run_script, to_cpu,
                     write_voc)
from models import FCN8s
from models.fcn8s import CLASSIFICATION_HEAD
from models.io import load_model, save_model
from training.gain_loss import GAINLoss
from training.mixed_precision import LossScale, loss_scale, set_precision
from training.trainer import make_optimizer


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
