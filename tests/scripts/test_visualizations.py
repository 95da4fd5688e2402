"""visualizations.py: all-zero maps marked, text drawn as written."""
import matplotlib.pyplot as plt
import numpy as np

import visualizations as plots
from visualizations import show_cam


def test_show_cam_marks_an_all_zero_map():
    img = np.zeros((8, 8, 3), np.uint8)
    fig, (a, b) = plt.subplots(1, 2)
    show_cam(fig, a, img, np.zeros((8, 8), np.float32))
    show_cam(fig, b, img, np.eye(8, dtype=np.float32))
    assert len(a.images) == 1 and [t.get_text() for t in a.texts] == [
        'all-zero CAM']
    assert len(b.images) == 2 and not b.texts
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
