"""training/extensions/best.py: --keep-best keeps the model of the best
validation point, across a resume, and says when it can never fire."""
import json
import os
import shutil

import chainer
import chainer.functions as F
import numpy as np
import PIL.Image
import pytest
from chainer.training import StandardUpdater, extension

from helpers import run_script, write_example
from models import FCN8s
from models.io import load_model, read_meta
from training.extensions import snapshots
from training.trainer import build_trainer


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
    resumed = snapshots.pick(str(out), None)
    if resumed is not None:
        snapshots.abandon_later(str(out), resumed[0],
                                int(resumed[1]['updater/iteration']))
    trainer = build_trainer(updater, (iterations, 'iteration'), str(out),
                            ['main/loss'], {}, validators=[validation],
                            eval_interval=1, snapshot_interval=2,
                            keep_best='map', resumed=resumed)
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
    assert ('warning: %s was written after the resumed snapshot (iteration '
            '2); kept as model_best.npz.superseded'
            % (tmp_path / 'model_best.npz')) in err
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


def test_keep_best_that_can_never_fire_says_so(files, tmp_path, monkeypatch,
                                               capsys):
    """--keep-best map on a val split without positive images (mAP
    undefined there) wrote no model_best.npz without a word."""
    voc = str(tmp_path / 'VOC')
    shutil.copytree(files['voc'], voc)
    for image_id in ('val_000', 'val_001'):       # background only
        png = os.path.join(voc, 'SegmentationClass', image_id + '.png')
        shape = np.asarray(PIL.Image.open(png)).shape
        write_example(voc, image_id, np.zeros(shape + (3,), np.uint8),
                      np.zeros(shape, np.uint8))
    out = tmp_path / 'classifier'
    code, err = run_script('train_classifier', [
        '--dataset', 'voc', '--data-dir', voc, '--modelfile', files['model'],
        '--out', out, '--iterations', 2, '--batch-size', 2, '--val-interval',
        1, '--keep-best', 'map', '--no-tensorboard'], monkeypatch, capsys)
    assert code == 0, err
    assert err.count('warning: --keep-best map can never write '
                     'model_best.npz: the validation at iteration 1 reports '
                     'no map') == 1
    assert not (out / 'model_best.npz').exists()
