"""bench/dtypes.py: the dtype recorder and check_step flag float64."""
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


def test_check_step_flags_float64_terminal_arrays():
    """A float64 parameter, its gradient and the output are named even
    where no function sees them as float64 inputs; float32 is clean."""
    import chainer.functions as F
    from bench.dtypes import check_step
    for dtype in (np.float32, np.float64):
        chain = chainer.Chain()
        with chain.init_scope():
            chain.w = chainer.Parameter(np.ones(3, dtype))

        def step():
            loss = F.sum(chain.w * 2)
            loss.backward()
            return loss
        result = check_step(step, chain)
        assert result['param_dtypes'] == result['grad_dtypes'] == \
            result['output_dtypes'] == [np.dtype(dtype).name]
        if dtype == np.float32:
            assert result['float64'] == []
        else:
            assert result['float64'][-1].startswith('terminal arrays: ')
            assert 'param_dtypes' in result['float64'][-1]
