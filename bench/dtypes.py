"""Where float64 appears in a step: a function hook recording the dtypes
each chainer function receives, and :func:`check_step` adding the arrays no
function receives (the output, parameters, gradients, optimizer state)."""
import collections

import chainer


class DtypeRecorder(chainer.FunctionHook):
    """Counts ``(function, phase, dtype)`` over the arrays each applied
    function receives: its inputs in forward, its inputs and output
    gradients in backward (double back-propagation included: gradient
    functions are applied functions too)."""

    name = 'DtypeRecorder'

    def __init__(self):
        self.counts = collections.Counter()

    def _add(self, function, phase, arrays):
        for a in arrays:
            if a is not None and hasattr(a, 'dtype'):
                self.counts[(function.label, phase, a.dtype.name)] += 1

    def forward_preprocess(self, function, in_data):
        self._add(function, 'forward', in_data)

    def backward_preprocess(self, function, in_data, out_grad):
        self._add(function, 'backward', tuple(in_data) + tuple(out_grad))

    def offending(self, dtype='float64'):
        """``['Function (phase) xN', ...]`` of the arrays of ``dtype``."""
        return ['%s (%s) x%d' % (f, p, n)
                for (f, p, d), n in sorted(self.counts.items()) if d == dtype]


def _dtypes(arrays):
    return sorted({a.dtype.name for a in arrays if hasattr(a, 'dtype')})


def check_step(step, loss_chain=None, optimizer=None):
    """Run ``step()`` (a training step or an inference call) under a
    :class:`DtypeRecorder`. Returns the ``function_dtypes``, the
    ``function_calls``, the ``output_dtypes``, with ``loss_chain`` the
    ``param_dtypes`` and ``grad_dtypes``, with ``optimizer`` the
    ``optimizer_state_dtypes``, and ``float64``: where float64 appeared
    (empty when nowhere)."""
    recorder = DtypeRecorder()
    with recorder:
        out = step()
    result = dict(function_dtypes=sorted({d for _, _, d in recorder.counts}),
                  function_calls=int(sum(recorder.counts.values())),
                  output_dtypes=_dtypes([getattr(out, 'array', out)]))
    if loss_chain is not None:
        params = list(loss_chain.params())
        result['param_dtypes'] = _dtypes([p.array for p in params])
        result['grad_dtypes'] = _dtypes([p.grad for p in params])
    if optimizer is not None:
        result['optimizer_state_dtypes'] = _dtypes([
            v for p in optimizer.target.params()
            for v in (getattr(p.update_rule, 'state', None) or {}).values()])
    terminal = {k: v for k, v in result.items() if k != 'function_dtypes'
                and k.endswith('_dtypes') and 'float64' in v}
    result['float64'] = recorder.offending('float64') + (
        ['terminal arrays: %s' % terminal] if terminal else [])
    return result
