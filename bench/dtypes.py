"""A function hook that records the dtypes a computation uses.

Every intermediate array of a chainer computation is the input of a later
function (forward), or a gradient handed to a backward (``out_grad``), or a
terminal value (the loss, the parameters' gradients); the hook sees the
first two, :func:`check_step` adds the last ones and the optimizer's state.
"""
import collections

import chainer


class DtypeRecorder(chainer.FunctionHook):
    """Counts ``(function, phase, dtype)`` over the arrays that each applied
    function receives: its inputs in ``forward``, its inputs and output
    gradients in ``backward`` (double back-propagation included, because
    the gradient functions are applied functions too)."""

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

    def dtypes(self):
        return sorted({d for _, _, d in self.counts})

    def offending(self, dtype='float64'):
        """``['Function (phase) xN', ...]`` of the arrays of ``dtype``."""
        return ['%s (%s) x%d' % (f, p, n)
                for (f, p, d), n in sorted(self.counts.items()) if d == dtype]


def array_dtypes(arrays):
    return sorted({a.dtype.name for a in arrays if a is not None})


def check_step(step, loss_chain=None, optimizer=None):
    """Run ``step()`` (one training step or one inference call) under a
    :class:`DtypeRecorder` and return a dict: ``dtypes`` seen by functions,
    ``float64`` (the offending functions; empty when none) and, with
    ``loss_chain``/``optimizer``, the dtypes of the parameters, their
    gradients and the optimizer state."""
    recorder = DtypeRecorder()
    with recorder:
        out = step()
    result = dict(function_dtypes=recorder.dtypes(),
                  float64=recorder.offending('float64'),
                  function_calls=int(sum(recorder.counts.values())))
    terminal = []
    if isinstance(out, chainer.Variable):
        terminal.append(out.array)
    elif hasattr(out, 'dtype'):
        terminal.append(out)
    if loss_chain is not None:
        params = list(loss_chain.params())
        result['param_dtypes'] = array_dtypes([p.array for p in params])
        result['grad_dtypes'] = array_dtypes([p.grad for p in params])
    if optimizer is not None:
        states = []
        for p in optimizer.target.params():
            state = getattr(p.update_rule, 'state', None) or {}
            states.extend(v for v in state.values() if hasattr(v, 'dtype'))
        result['optimizer_state_dtypes'] = array_dtypes(states)
    result['output_dtypes'] = array_dtypes(terminal)
    floats = set()
    for key in ('param_dtypes', 'grad_dtypes', 'optimizer_state_dtypes',
                'output_dtypes'):
        floats.update(result.get(key, ()))
    if 'float64' in floats:
        result['float64'] = result['float64'] + ['terminal arrays: %s' % {
            k: result[k] for k in ('param_dtypes', 'grad_dtypes',
                                   'optimizer_state_dtypes', 'output_dtypes')
            if 'float64' in result.get(k, ())}]
    return result


def has_float64(result):
    return bool(result['float64'])
