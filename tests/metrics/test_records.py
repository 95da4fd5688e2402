"""metrics/records.py: per_image.npz written and read back, a damaged one
refused in one line."""
import numpy as np
import pytest

from metrics.records import load_records, save_records
from runtime.errors import DatasetError


def test_records_round_trip_and_a_damaged_file_is_one_line(tmp_path):
    path = str(tmp_path / 'per_image.npz')
    records = {'a': {'logits': np.arange(6.).reshape(3, 2)},
               'b': {'confusion': np.ones((3, 2, 2), np.int64)}}
    with open(path, 'wb') as f:
        save_records(f, records, ['x', 'y', 'z'])
    got, ids = load_records(path)
    assert ids == ['x', 'y', 'z'] and list(got) == ['a', 'b']
    np.testing.assert_array_equal(got['a']['logits'], records['a']['logits'])
    np.testing.assert_array_equal(got['b']['confusion'],
                                  records['b']['confusion'])
    with open(path, 'r+b') as f:
        f.truncate(200)
    with pytest.raises(DatasetError) as e:
        load_records(path)
    assert str(e.value).startswith(path + ': ') and '\n' not in str(e.value)
