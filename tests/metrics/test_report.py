"""metrics/report.py: the per-class tables."""
from metrics.report import class_matrix


def test_a_class_matrix_has_a_row_per_model_and_chance_one_row():
    per_row = {m: {'disc': {'pointing_scaled': hit,
                            'pointing_scaled_chance': 0.05},
                   'cross': {'pointing_scaled': hit / 2,
                             'pointing_scaled_chance': 0.04}}
               for m, hit in (('classifier', 0.2), ('gain', 0.6))}
    rows = class_matrix(per_row, 'pointing_scaled', px=2.88).splitlines()
    assert rows[0] == '| Pointing game (2.88 px) | disc | cross |'
    assert rows[2:] == ['| classifier | 20.0 | 10.0 |',
                        '| gain | 60.0 | 30.0 |']
    rows = class_matrix(per_row, 'pointing_scaled_chance',
                        px=2.88).splitlines()
    assert rows[0] == '| Chance (2.88 px) | disc | cross |'
    assert rows[2:] == ['| chance (any model) | 5.0 | 4.0 |']
