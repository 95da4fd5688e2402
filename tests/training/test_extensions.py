"""training/extensions.py: validation, --keep-best, a run's pictures."""
import json
import os

import chainer
import chainer.functions as F
import matplotlib.pyplot as plt
import numpy as np
import pytest
from chainer.training import StandardUpdater, extension, extensions

import visualizations as plots
from datasets import VOCSegmentation, deprocess
from evaluate import evaluate_model
from helpers import N_VOC, Toy, run_script, voc_args
from models import FCN8s, class_cams
from runtime.model_files import load_model, read_meta
from training.extensions import PanelPlot, attention_rows
from training.trainer import build_trainer
from visualizations import term_panel


class BiasLoss(chainer.Chain):
    """``sum(score_fr.b)`` of a thin FCN8s: each Adam step moves those
    weights, so they tell the iterations apart."""

    def __init__(self, model):
        super().__init__()
        with self.init_scope():
            self.model = model

    def forward(self, x):
        loss = F.sum(self.model.score_fr.b[None] * x)
        chainer.report({'loss': loss}, self)
        return loss


class ScriptedValidation(extension.Extension):
    """Reports ``validation/main/map`` = ``scores[iteration]`` and keeps
    the weights it was reported for; the validation before the first update
    (or at a resumed snapshot), which KeepBest does not see, reports 0."""
    priority = extension.PRIORITY_WRITER

    def __init__(self, model, scores):
        self.model, self.scores, self.seen = model, scores, {}

    def __call__(self, trainer):
        it = trainer.updater.iteration
        self.seen[it] = self.model.score_fr.b.array.copy()
        chainer.report({'validation/main/map': self.scores.get(it, 0.0)})


def train(out, iterations, scores):
    """A toy run to ``iterations`` with one validation per update and a
    snapshot every 2 (resuming from ``out``'s newest); its validator."""
    np.random.seed(0)
    model = FCN8s(4, 1 / 16.)
    loss = BiasLoss(model)
    optimizer = chainer.optimizers.Adam(alpha=0.01)
    optimizer.setup(loss)
    data = np.ones((8, 4), np.float32)
    updater = StandardUpdater(
        chainer.iterators.SerialIterator(data, 2, shuffle=False), optimizer)
    validation = ScriptedValidation(model, scores)
    trainer = build_trainer(updater, (iterations, 'iteration'), str(out),
                            ['main/loss'], {}, validators=[validation],
                            eval_interval=1, snapshot_interval=2,
                            keep_best='map', tensorboard=False)
    trainer.run()
    return validation


def kept(out):
    path = os.path.join(str(out), 'model_best.npz')
    model, _ = load_model(path)          # readable as any model file
    return read_meta(path)['best'], model.score_fr.b.array


def test_kept_model_is_the_best_validation_point_and_survives_a_resume(
        tmp_path, capsys):
    first = train(tmp_path, 4, {1: 0.2, 2: 0.9, 3: 0.5, 4: 0.9})
    best, weights = kept(tmp_path)
    # the earliest of equal scores
    assert best == dict(metric='map', score=0.9, iteration=2)
    np.testing.assert_array_equal(weights, first.seen[2])
    assert not np.array_equal(first.seen[2], first.seen[4])

    # resumed from the snapshot of iteration 4, worse scores after it
    train(tmp_path, 6, {5: 0.3, 6: 0.1})
    assert 'resuming from' in capsys.readouterr().err
    best, weights = kept(tmp_path)
    assert best == dict(metric='map', score=0.9, iteration=2)
    np.testing.assert_array_equal(weights, first.seen[2])


def test_best_written_after_the_resumed_snapshot_is_set_aside(tmp_path,
                                                              capsys):
    """A run killed after writing model_best.npz at iteration 4 and before
    its snapshot there resumes from iteration 2, whose best is iteration
    2's: the file of iteration 4 is kept aside, and the resumed run's own
    best written."""
    train(tmp_path, 4, {1: 0.1, 2: 0.2, 3: 0.15, 4: 0.9})
    assert kept(tmp_path)[0]['iteration'] == 4
    os.remove(str(tmp_path / 'snapshot_iter_4.npz'))
    capsys.readouterr()
    resumed = train(tmp_path, 4, {3: 0.25, 4: 0.15})
    err = capsys.readouterr().err
    assert 'model_best.npz is not the best model of the resumed snapshot ' \
        '(iteration 4, not 2); kept as model_best.npz.superseded' in err
    best, weights = kept(tmp_path)
    assert best == dict(metric='map', score=0.25, iteration=3)
    np.testing.assert_array_equal(weights, resumed.seen[3])
    assert read_meta(str(tmp_path / 'model_best.npz.superseded'))[
        'best']['iteration'] == 4


def classifier(voc_dir, out, iterations):
    return ['--dataset', 'voc', '--data-dir', voc_dir, '--out', out,
            '--train-trunk', '--batch-size', 2, '--seed', 2,
            '--iterations', iterations, '--val-interval', 10,
            '--keep-best', 'map', '--no-tensorboard']


@pytest.mark.slow
def test_train_classifier_keeps_the_weights_of_its_best_map(
        voc_dir, tmp_path, monkeypatch, capsys):
    """model_best.npz of a 30-update run equals model.npz of a run stopped
    at the iteration whose validation mAP the log shows best (the first of
    equal ones), the untrained model of iteration 0 not among them."""
    out = str(tmp_path / 'run')
    code, err = run_script('train_classifier', classifier(voc_dir, out, 30),
                           monkeypatch, capsys)
    assert code == 0, err
    log = json.load(open(os.path.join(out, 'log')))
    scores = [(e['iteration'], e['validation/main/map']) for e in log]
    assert [it for it, _ in scores] == [0, 10, 20, 30]
    scores = scores[1:]     # the model before training is not a candidate
    top = max(score for _, score in scores)
    at = min(it for it, score in scores if score == top)
    best = read_meta(os.path.join(out, 'model_best.npz'))['best']
    assert best == dict(metric='map', score=top, iteration=at)

    short = str(tmp_path / 'short')
    code, err = run_script('train_classifier', classifier(voc_dir, short, at),
                           monkeypatch, capsys)
    assert code == 0, err
    a, _ = load_model(os.path.join(out, 'model_best.npz'))
    b, _ = load_model(os.path.join(short, 'model.npz'))
    for (name, p), (_, q) in zip(a.namedparams(), b.namedparams()):
        np.testing.assert_array_equal(p.array, q.array, err_msg=name)


def test_validation_figures_equal_evaluate(pipeline, tmp_path, monkeypatch,
                                           capsys):
    """train_fcn's validation mean IU and train_GAIN's validation pointing
    game, energy and attention mIoU are evaluate.py's figures of the final
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
    ours, _ = evaluate_model(load_model(fcn_out + '/model.npz')[0], val, device,
                          metrics=[SegmentationMetrics(N_VOC)])
    assert log[-1]['validation/main/mean_iu'] == pytest.approx(
        ours['mean_iu'], rel=1e-6)

    code, err = run_script('train_GAIN', voc_args(pipeline, gain) + [
        '--modelfile', fcn_out + '/model.npz', '--iterations', 3],
        monkeypatch, capsys)
    assert code == 0, err
    log = json.load(open(os.path.join(gain, 'log')))
    ours, _ = evaluate_model(load_model(gain + '/model.npz')[0], val, device,
                          metrics=[ClassificationMetrics(N_VOC),
                                   AttentionMetrics(N_VOC)])
    for key in ('pointing', 'energy', 'attention_miou'):
        assert log[-1]['validation/main/' + key] == pytest.approx(
            100 * ours[key], rel=1e-5), key


@pytest.mark.parametrize('am_mode,expected', [
    ('per-class', [(0, [0]), (0, [2]), (2, [1])]),
    ('joint', [(0, [0, 2]), (2, [1])])])
def test_attention_rows_follow_the_am_mode(thin_model, am_mode, expected):
    x = np.random.RandomState(0).uniform(-50, 50, (3, 3, 32, 40)).astype(
        np.float32)
    labels = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]], np.int32)
    rows = attention_rows(thin_model, x, labels, 0.5, 10.0, am_mode)
    assert [r[0].tolist() for r in rows] == [c for _, c in expected]
    for (image, classes), (_, img, cam, mask, erased) in zip(expected, rows):
        assert img.shape == erased.shape == (32, 40, 3)
        assert cam.shape == mask.shape == (32, 40)
        # the mask and erased image of GAIN's formula, in float64
        t = 1 / (1 + np.exp(-10.0 * (cam.astype(np.float64) - 0.5)))
        np.testing.assert_allclose(mask, t, rtol=1e-5, atol=1e-6)
        ref = x[image].astype(np.float64) * (1 - t)
        np.testing.assert_allclose(erased.astype(int),
                                   deprocess(ref).astype(int), atol=1)
        if len(classes) == 1:   # the CAM of that class of that image
            ref = class_cams(thin_model, x[image:image + 1],
                             [[classes[0] + 1]])[0][0]
            np.testing.assert_allclose(cam, ref, atol=1e-5)


def test_panel_plot_one_figure_one_panel_per_term(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(plots, 'save_figure',
                        lambda fig, path: drawn.append((fig, path)))
    model = Toy()
    optimizer = chainer.optimizers.SGD(lr=0.1)
    optimizer.setup(model)
    it = chainer.iterators.SerialIterator([np.ones(1, np.float32)] * 4, 2)
    trainer = chainer.training.Trainer(
        chainer.training.StandardUpdater(it, optimizer), (4, 'iteration'),
        out=str(tmp_path))
    trainer.extend(extensions.LogReport(trigger=(2, 'iteration')))
    panels = [term_panel('seg', ['main/loss', 'validation/main/loss']),
              term_panel('am', ['main/am'])]
    trainer.extend(PanelPlot(panels, 'loss.png', 'a run'),
                   trigger=(2, 'iteration'))
    trainer.run()
    assert len(drawn) == 2     # at iterations 2 and 4
    fig, path = drawn[-1]
    assert path == str(tmp_path / 'loss.png')
    assert fig._suptitle.get_text() == 'a run'
    seg, am = [ax for ax in fig.axes if ax.get_visible()]
    assert seg.get_title() == 'L_seg: softmax cross-entropy'
    assert seg.get_ylabel() == 'nats per labelled pixel'
    assert seg.get_xlabel().startswith('iteration')
    assert seg.lines[0].get_xdata().tolist() == [2, 4]
    assert [l.get_label() for l in seg.lines] == ['train']
    assert [t.get_text() for t in am.texts] == ['not logged yet']
    plt.close(fig)
