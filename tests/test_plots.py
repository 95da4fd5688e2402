"""Pictures: the loss figure's panels, the attention rows of each
--am-mode, and the marking of an all-zero CAM."""
import chainer
import matplotlib.pyplot as plt
import numpy as np
import pytest
from chainer.training import extensions

from datasets import deprocess
from helpers import Toy
from models import class_cams
import visualizations as plots
from training.extensions import PanelPlot, attention_rows
from visualizations import show_cam, term_panel


def test_show_cam_marks_an_all_zero_map():
    img = np.zeros((8, 8, 3), np.uint8)
    fig, (a, b) = plt.subplots(1, 2)
    show_cam(fig, a, img, np.zeros((8, 8), np.float32))
    show_cam(fig, b, img, np.eye(8, dtype=np.float32))
    assert len(a.images) == 1 and [t.get_text() for t in a.texts] == [
        'all-zero CAM']
    assert len(b.images) == 2 and not b.texts
    plt.close(fig)


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


def test_text_with_dollars_is_drawn_as_written(tmp_path):
    """Class names, image ids and model names are never parsed as
    mathtext ('$x_$' was a ParseException, '$a$' drawn in italics)."""
    from matplotlib.text import Text
    names = ['background', '$x_$', 'cost $5']
    img = np.zeros((8, 8, 3), np.uint8)
    label_map = np.zeros((8, 8), np.int32)
    label_map[2:4, 2:4], label_map[5:7, 5:7] = 1, 2
    cams = np.stack([np.eye(8), np.ones((8, 8))]).astype(np.float32)
    result = dict(classes=np.array([1, 2]), cams=[cams, cams],
                  scores=[np.array([0.5, 0.25])] * 2,
                  logits=np.array([1.0, 2.0]), pred=label_map)
    curve = dict(attention_curve=dict(tau=[0.25, 0.5], miou=[0.1, 0.2]),
                 attention_tau=0.5, attention_miou=0.2,
                 attention_fixed_tau=0.5)
    figures = [
        plots.image_figure('id $y^$', img, label_map, result, names),
        plots.attention_grid_figure([('$x_$', img, cams[0], cams[0], img)]),
        plots.attention_curves_figure({'$m_$': curve})]
    for k, fig in enumerate(figures):
        texts = {t.get_text() for t in fig.findobj(Text)}
        plots.save_figure(fig, str(tmp_path / ('%d.png' % k)))
        assert texts & {'id $y^$', '$x_$', '$x_$: before: $x_$ (0.50)',
                        'before: $x_$ (0.50)', '$m_$'}, texts
        assert (tmp_path / ('%d.png' % k)).stat().st_size > 0
