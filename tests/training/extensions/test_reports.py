"""training/extensions/reports.py: the attention pictures' rows, the
figures of the logged terms and the note on a long run."""
import chainer
import matplotlib.pyplot as plt
import numpy as np
import pytest
from chainer.training import extensions

import visualizations as plots
from datasets import deprocess
from helpers import Toy, toy_trainer
from training.extensions import reports
from models import class_cams
from training.extensions.reports import PanelPlot, attention_rows
from visualizations import term_panel


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


@pytest.mark.parametrize('seconds,said', [(100, True), (10, False)])
def test_a_long_run_is_announced_from_its_first_updates(
        tmp_path, monkeypatch, capsys, seconds, said):
    """At ``seconds`` an update (a clock the test moves), a run of 20
    updates is said to take 14 x seconds more after its sixth, when that
    is over ten minutes (1400 s: 23 minutes; 140 s: nothing)."""
    clock = iter(range(0, 10 ** 6, seconds))
    monkeypatch.setattr(reports.DurationNote, 'clock',
                        staticmethod(lambda: next(clock)))
    trainer, _ = toy_trainer(tmp_path / 'run', iterations=20, interval=50)
    trainer.run()
    err = capsys.readouterr().err
    note = ('note: this run takes about 23 minutes more at this speed '
            '(100.00 s per update; validations not counted)')
    assert (note in err) == said and err.count('note: this run') == said
