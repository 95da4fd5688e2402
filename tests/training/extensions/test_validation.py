"""training/extensions/validation.py: the validation figures are
evaluate.py's."""
import json
import os

import chainer
import pytest

from datasets import VOCSegmentation
from evaluate import evaluate_model
from helpers import N_VOC, run_script, voc_args
from models.io import load_model


def test_validation_figures_equal_evaluate(pipeline, tmp_path, monkeypatch,
                                           capsys):
    """train_fcn's validation mean IU and train_GAIN's validation pointing
    game, energy, attention mIoU and mAP are evaluate.py's figures of the final
    model on the val split (the log in percent, evaluate's metrics.json in
    fractions)."""
    from metrics import AttentionMetrics
    from metrics import ClassificationMetrics, SegmentationMetrics
    val = VOCSegmentation(pipeline['voc'], 'val')
    device = chainer.get_device('@numpy')
    fcn_out, gain = str(tmp_path / 'fcn'), str(tmp_path / 'gain')
    code, err = run_script('train_fcn', voc_args(pipeline, fcn_out) + [
        '--width', 1 / 16., '--cls-weight', 1, '--iterations', 3],
        monkeypatch, capsys)
    assert code == 0, err
    log = json.load(open(os.path.join(fcn_out, 'log')))
    ours, _ = evaluate_model(load_model(fcn_out + '/model.npz')[0], val,
                             device, metrics=[SegmentationMetrics(N_VOC)])
    assert log[-1]['validation/main/mean_iu'] == pytest.approx(
        100 * ours['mean_iu'], rel=1e-6)

    code, err = run_script('train_GAIN', voc_args(pipeline, gain) + [
        '--modelfile', fcn_out + '/model.npz', '--iterations', 3],
        monkeypatch, capsys)
    assert code == 0, err
    log = json.load(open(os.path.join(gain, 'log')))
    ours, _ = evaluate_model(load_model(gain + '/model.npz')[0], val, device,
                          metrics=[ClassificationMetrics(N_VOC),
                                   AttentionMetrics(N_VOC)])
    for key in ('pointing', 'energy', 'attention_miou', 'map'):
        assert log[-1]['validation/main/' + key] == pytest.approx(
            100 * ours[key], rel=1e-5), key
