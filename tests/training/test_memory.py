"""training/memory.py: a step's memory estimate, a batch that cannot fit."""
import chainer
import numpy as np

from helpers import error_line, fcn_args, run_script
from models import FCN8s
from training.memory import trunk_activations


class InputSizes(chainer.FunctionHook):
    """Records ``(function label, size of its first input)`` in order."""
    name = 'input_sizes'

    def __init__(self):
        self.seen = []

    def forward_postprocess(self, function, in_data):
        self.seen.append((function.label, in_data[0].size))


def test_trunk_activations_are_those_of_a_forward():
    """Each conv and each of the first four poolings of a classification
    forward of an odd-sized image, as (input, output) element counts: a
    conv's output is what its ReLU reads, a pooling's what the next conv
    reads."""
    model = FCN8s(4, 1 / 16.)
    hook = InputSizes()
    with hook, chainer.using_config('train', False), \
            chainer.no_backprop_mode():
        model.classify(np.zeros((1, 3, 37, 50), np.float32))
    seen = hook.seen
    layers = []
    for i, (label, size) in enumerate(seen):
        if label == 'Convolution2DFunction':
            layers.append((size, seen[i + 1][1]))
        elif label == 'MaxPoolingND' and seen[i + 1][0] != 'Mean':
            layers.append((size, seen[i + 1][1]))
    assert len(layers) == 13 + 4
    assert trunk_activations(model, (37, 50)) == layers


def test_a_batch_that_cannot_fit_in_memory_is_refused(files, tmp_path,
                                                      monkeypatch, capsys):
    import training.memory
    monkeypatch.setattr(training.memory, 'available_memory',
                        lambda device: 10 ** 5)
    out = tmp_path / 'fcn'
    code, err = run_script('train_fcn', fcn_args(files['voc'], out),
                           monkeypatch, capsys)
    line = error_line(err)
    assert code == 2
    assert line.startswith('error: --batch-size 2: a training step on 32x40 '
                           'images needs at least ')
    assert 'use a smaller --batch-size' in line
    assert not out.exists()
