"""models/gain.py: GAIN's soft mask and erasure, and the erased CAMs."""
import chainer
import chainer.functions as F
import numpy as np
import pytest
from chainer import gradient_check

from helpers import SIZE, assert_close, gpu_device
from models.gain import soft_erase, soft_mask


def test_soft_mask_and_erasure_on_a_hand_made_map():
    cam = np.array([[[0.0, 0.5, 1.0]]], dtype=np.float32)     # (1, 1, 3)
    mask = soft_mask(cam, sigma=0.5, omega=10.0)
    sig = 1 / (1 + np.exp(-np.array([-5.0, 0.0, 5.0])))
    np.testing.assert_allclose(mask[0, 0], sig, rtol=1e-6)
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 1, 3) - 4
    erased = soft_erase(x, cam, sigma=0.5, omega=10.0).array
    np.testing.assert_allclose(erased, x * (1 - sig), rtol=1e-5)
    # a fully attended pixel becomes the mean colour (0 after preprocessing)
    full = soft_erase(x, np.ones((1, 1, 3), np.float32), sigma=0.5,
                      omega=1e4).array
    np.testing.assert_array_equal(full, 0)


def test_erased_cams_per_class_and_joint():
    from models.gain import erased_cams
    labels = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]], np.int32)
    rows, targets = erased_cams(labels, 'per-class', np.float32)
    assert rows.tolist() == [0, 0, 2]
    assert targets.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    assert targets.dtype == np.float32
    rows, targets = erased_cams(labels, 'joint', np.float32)
    assert rows.tolist() == [0, 2]
    assert targets.tolist() == [[1, 0, 1], [0, 1, 0]]


def test_soft_erase_is_mask_then_erase():
    """One function, the numbers of the formula I* = I - T(A) I with
    T(A) = 1 / (1 + exp(-omega (A - sigma))), computed here in float64."""
    rng = np.random.RandomState(0)
    x = rng.normal(0, 60, (2, 3, 5, 7)).astype(np.float32)
    a = rng.uniform(0, 1, (2, 5, 7)).astype(np.float32)
    y = soft_erase(x, a, sigma=0.4, omega=8.0)
    t = 1 / (1 + np.exp(-8.0 * (a.astype(np.float64) - 0.4)))
    np.testing.assert_allclose(y.array, x - t[:, None] * x, rtol=1e-5,
                               atol=1e-4)
    assert y.dtype == np.float32


def test_soft_erase_gradients_match_central_differences():
    rng = np.random.RandomState(1)
    x = rng.normal(0, 1, (2, 3, 4, 5))
    a = rng.uniform(0, 1, (2, 4, 5))
    gy = rng.normal(0, 1, x.shape)
    gradient_check.check_backward(
        lambda x, a: soft_erase(x, a, sigma=0.5, omega=10.0), (x, a), gy,
        eps=1e-6, atol=1e-7, rtol=1e-6, dtype=np.float64)


def test_soft_erase_backward_is_not_differentiated_silently():
    """The backward is not differentiable: asking for it fails loudly
    instead of giving a zero second derivative."""
    x = chainer.Variable(np.ones((1, 3, 2, 2), np.float32))
    a = chainer.Variable(np.full((1, 2, 2), 0.3, np.float32))
    gx, = chainer.grad([F.sum(soft_erase(x, a) ** 2)], [a],
                       enable_double_backprop=True)
    with pytest.raises(NotImplementedError):
        F.sum(gx).backward()


@pytest.mark.gpu
def test_soft_erase_matches_cpu():
    """The fused erasure's CUDA kernels against its numpy code."""
    device = gpu_device()
    rng = np.random.RandomState(0)
    x = rng.normal(0, 60, (3, 3, SIZE, SIZE)).astype(np.float32)
    a = rng.uniform(0, 1, (3, SIZE, SIZE)).astype(np.float32)
    gy = rng.normal(0, 1, x.shape).astype(np.float32)
    outputs = []
    for arrays in ((x, a, gy), [device.send(v) for v in (x, a, gy)]):
        xv, av = chainer.Variable(arrays[0]), chainer.Variable(arrays[1])
        y = soft_erase(xv, av, sigma=0.4, omega=10.0)
        y.grad = arrays[2]
        y.backward()
        outputs.append((y.array, xv.grad, av.grad))
    for cpu, gpu, name in zip(outputs[0], outputs[1], ('y', 'gx', 'ga')):
        assert isinstance(gpu, device.xp.ndarray), name
        assert_close(gpu, cpu, rtol=1e-5, scale_tol=1e-5, name=name)
