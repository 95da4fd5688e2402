"""train_classifier.py: the head it trains and records, pretraining."""
import json
import os

import numpy as np

from helpers import params, run_script, voc_args
from models import FCN8s
from models.fcn8s import CLASSIFICATION_HEAD, TRUNK
from models.io import load_model


def test_pretraining_options_train_the_trunk(pipeline, tmp_path, monkeypatch,
                                             capsys):
    """train_classifier --train-trunk (no model file) moves every trunk
    layer of the classification stream (conv1_1 ... conv5_3) and the head
    from the fresh model it drew, and train_fcn --cls-weight moves the
    trunk and the head again. (Without --train-trunk the trunk stays
    bit-identical: test_mixed16_run_writes_float32_weights.)"""
    import train_classifier
    drawn = []

    def fresh(*args):
        model = FCN8s(*args)
        drawn.append({n: p.array.copy() for n, p in model.namedparams()})
        return model
    monkeypatch.setattr(train_classifier, 'FCN8s', fresh)
    pre = str(tmp_path / 'pre')
    code, err = run_script('train_classifier', voc_args(pipeline, pre) + [
        '--train-trunk', '--width', 0.0625, '--iterations', 2], monkeypatch,
        capsys)
    assert code == 0, err
    start, a = drawn[0], params(pre + '/model.npz')
    for name in ['/%s/%s' % (layer, p) for layer in TRUNK + CLASSIFICATION_HEAD
                 for p in 'Wb']:
        assert not np.array_equal(a[name], start[name]), name
    fcn_out = str(tmp_path / 'fcn')
    code, err = run_script('train_fcn', voc_args(pipeline, fcn_out) + [
        '--modelfile', pre + '/model.npz', '--cls-weight', 1,
        '--iterations', 2], monkeypatch, capsys)
    assert code == 0, err
    b = params(fcn_out + '/model.npz')
    for name in ('/conv1_1/W', '/score_fr/W', '/fc6_cl/W', '/score_cl/W'):
        assert not np.array_equal(a[name], b[name]), name
    log = json.load(open(os.path.join(fcn_out, 'log')))
    assert {'main/seg', 'main/cl'} <= set(log[-1])
    code, err = run_script('train_classifier', voc_args(
        pipeline, str(tmp_path / 'x')), monkeypatch, capsys)
    assert code != 0 and '--modelfile is required' in err


def test_writes_nothing_over_a_finished_run(pipeline, tmp_path, monkeypatch,
                                             capsys):
    out = str(tmp_path / 'cls')
    args = voc_args(pipeline, out) + ['--modelfile', pipeline['fcn'],
                                      '--iterations', 1]
    assert run_script('train_classifier', args, monkeypatch, capsys)[0] == 0
    before = open(out + '/model.npz', 'rb').read()
    code, err = run_script('train_classifier', args, monkeypatch, capsys)
    assert code != 0 and 'finished run' in err
    assert open(out + '/model.npz', 'rb').read() == before


def test_head_record_through_the_stages(pipeline, tmp_path, monkeypatch,
                                        capsys):
    """train_fcn records a head it trained (--cls-weight); train_classifier
    draws a fresh head unless --keep-head and records itself; train_GAIN
    refuses a head that no stage trained."""
    def stage(script, out, *extra):
        code, err = run_script(script, voc_args(pipeline, str(out)) + [
            '--iterations', 1, '--val-split', ''] + list(extra),
            monkeypatch, capsys)
        return code, err, str(out) + '/model.npz'

    code, _, seg_only = stage('train_fcn', tmp_path / 'seg', '--width',
                              1 / 16., '--cls-weight', 0)
    assert code == 0 and load_model(seg_only)[0].head_trained_by == []
    code, err, _ = stage('train_GAIN', tmp_path / 'gain', '--modelfile',
                         seg_only)
    assert code == 2 and 'head was never trained' in err
    assert not os.path.exists(tmp_path / 'gain' / 'model.npz')

    code, _, multi = stage('train_fcn', tmp_path / 'multi', '--width',
                           1 / 16., '--cls-weight', 1)
    first = load_model(multi)[0]
    assert code == 0
    assert first.head_trained_by == ['train_fcn.py --cls-weight 1']
    for keep in (False, True):
        code, err, path = stage(
            'train_classifier', tmp_path / ('cls%d' % keep), '--modelfile',
            multi, '--lr', 1e-9, *(['--keep-head'] if keep else []))
        assert code == 0, err
        model = load_model(path)[0]
        assert model.head_trained_by == (
            first.head_trained_by if keep else []) + ['train_classifier.py']
        moved = max(float(np.abs(getattr(model, n).W.array -
                                 getattr(first, n).W.array).max())
                    for n in CLASSIFICATION_HEAD)
        assert (moved < 1e-6) == keep, moved   # lr 1e-9: a fresh head moved
