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
    mathtext: '$x_$' (a ParseException if parsed), '$a$' (drawn in
    italics if parsed) and 'cost $5' each appear as written, in every
    place the figures draw them, and each text with a '$' is drawn as
    plain text."""
    from matplotlib.text import Text
    names = ['background', '$x_$', '$a$', 'cost $5']
    img = np.zeros((8, 8, 3), np.uint8)
    label_map = np.zeros((8, 8), np.int32)
    label_map[1:3, 1:3], label_map[4:6, 4:6], label_map[6:, :2] = 1, 2, 3
    cams = np.stack([np.eye(8), np.ones((8, 8)), np.eye(8)[::-1]])
    result = dict(classes=np.array([1, 2, 3]), cams=[cams, cams],
                  scores=[np.array([0.5, 0.25, 0.75])] * 2,
                  logits=np.array([1.0, 2.0, 0.5]), pred=label_map)
    curve = dict(attention_curve=dict(tau=[0.25, 0.5], miou=[0.1, 0.2]),
                 attention_tau=0.5, attention_miou=0.2,
                 attention_fixed_tau=0.5)
    cases = [
        (plots.image_figure('id $y^$', img, label_map, result, names),
         {'id $y^$'} | set(names[1:]) | {
             '%s: %s (%.1f %%)' % (when, n, 100 * score)
             for when in ('before', 'after')
             for n, score in zip(names[1:], (0.5, 0.25, 0.75))}),
        (plots.attention_grid_figure(
            [(n, img, cams[0], cams[0], img) for n in names[1:]]),
         set(names[1:])),
        (plots.attention_curves_figure({n: curve for n in names[1:]}),
         set(names[1:]))]
    for k, (fig, expected) in enumerate(cases):
        drawn = [t for t in fig.findobj(Text) if '$' in t.get_text()]
        assert {t.get_text() for t in drawn} == expected
        # What Text.draw renders: the string, and whether as mathtext.
        for t in drawn:
            assert t._preprocess_math(t.get_text()) == (t.get_text(), False)
        plots.save_figure(fig, str(tmp_path / ('%d.png' % k)))
        assert (tmp_path / ('%d.png' % k)).stat().st_size > 0
