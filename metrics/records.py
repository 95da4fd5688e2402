"""``per_image.npz``: the per-image records ``evaluate.py`` writes and
the experiments' bootstrap reads (plain arrays, no pickle)."""
import numpy as np

from runtime.errors import DatasetError
from runtime.files import open_input


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
    with open_input(path, 'records', error=DatasetError) as data, \
            np.load(data, allow_pickle=False) as f:
        names = list(f['names'])
        records = {n: {} for n in names}
        for key in f.files:
            if '/' in key:
                i, k = key.split('/', 1)
                records[names[int(i)]][k] = f[key]
        if any('attention_sweep' in r and 'pointing_distance' not in r
               for r in records.values()):
            raise DatasetError('%s: written by an older evaluate.py (no '
                               'pointing distances); rerun evaluate.py' % path)
        return records, list(f['ids'])
