"""``per_image.npz``: the per-image records ``evaluate.py`` writes and
the experiments' bootstrap reads (plain arrays, no pickle)."""
import numpy as np

from runtime.errors import DatasetError
from runtime.files import read_npz


def save_records(f, records, ids):
    """Write ``names``, ``ids`` and ``<i>/<key>`` (the records ``{name:
    {key: array}}`` of model ``names[i]``) to the binary file ``f``."""
    arrays = dict(names=np.array(list(records), str), ids=np.array(ids, str))
    for i, r in enumerate(records.values()):
        arrays.update({'%d/%s' % (i, k): np.asarray(v) for k, v in r.items()})
    np.savez(f, **arrays)


def load_records(path):
    """``({name: records}, ids)``; DatasetError for a file written before
    the pointing distances."""
    arrays = read_npz(path, 'records', DatasetError, 'a per_image.npz')
    names = list(arrays['names'])
    records = {n: {} for n in names}
    for key, value in arrays.items():
        if '/' in key:
            i, k = key.split('/', 1)
            records[names[int(i)]][k] = value
    if any('attention_sweep' in r and 'pointing_distance' not in r
           for r in records.values()):
        raise DatasetError('%s: written by an older evaluate.py (no '
                           'pointing distances); rerun evaluate.py' % path)
    return records, list(arrays['ids'])
