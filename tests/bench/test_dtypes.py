"""bench/dtypes.py: the dtype recorder flags float64."""
import chainer
import numpy as np


def test_dtype_recorder_reports_float64():
    """The recorder does flag a float64 array (so an empty report means
    something)."""
    from bench.dtypes import DtypeRecorder
    import chainer.functions as F
    x = chainer.Variable(np.ones((2, 3), np.float64))
    recorder = DtypeRecorder()
    with recorder:
        y = F.sum(F.relu(x) * 2)
        y.backward()
    assert recorder.offending('float64')
    assert any(s.startswith('ReLU (forward)') for s in
               recorder.offending('float64'))
    assert any('(backward)' in s for s in recorder.offending('float64'))
