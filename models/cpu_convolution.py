"""Faster NumPy kernels for chainer's 2-D convolutions on the CPU, in the
``_forward_cpu_core`` of ``Convolution2DFunction``, ``Convolution2DGradW``
and ``Deconvolution2DFunction``; the nodes and their ``backward`` (so every
gradient of any order) stay chainer's, as do GPU, float16, groups and
dilation. Chainer 7.8.1's ``tensordot`` copies all of im2col's ``col``
(a step's largest array) and leaves outputs channels-last; here ``col``
is the matrix ``(C*kh*kw, N*oh*ow)``, each kernel one matrix product, and
outputs ``(N, C, H, W)`` arrays in ``(C, N, H, W)`` memory order, which
the next layer reads as a matrix. Where smaller (the upscore layers), a
deconvolution is one stride-1 convolution over the stride phases
(:func:`_subpixel`), and a strided convolution and its weight gradient go
through the stride-phase image. A thin FCN8s step is twice as fast
(docs/BENCHMARKS.md); results equal chainer's within rounding.
:func:`install` (``import models`` calls it) puts them in place.
"""
import contextlib

import numpy
from chainer.functions.connection import convolution_2d as _conv
from chainer.functions.connection import deconvolution_2d as _deconv
from chainer.utils import conv as _conv_utils

_FAST_DTYPES = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))

#: ``(class, chainer's _forward_cpu_core)`` of each replaced kernel.
_ORIGINAL = {name: (cls, cls._forward_cpu_core) for name, cls in (
    ('conv', _conv.Convolution2DFunction),
    ('grad_w', _conv.Convolution2DGradW),
    ('deconv', _deconv.Deconvolution2DFunction))}


def _fast(node, *arrays):
    """Whether the fast kernels compute ``node`` on ``arrays``."""
    dtype = arrays[0].dtype
    return (node.groups == 1 and node.dy == 1 and node.dx == 1
            and not node._use_ideep and dtype in _FAST_DTYPES
            and all(a is None or a.dtype == dtype for a in arrays))


def _ceil_div(a, b):
    return -(-a // b)


def _channel_major(a):
    """``a (N, C, H, W)`` as ``(C, N*H*W)``: a view of the kernels'
    outputs."""
    return a.transpose(1, 0, 2, 3).reshape(a.shape[1], -1)


def _phase_image(x, kh, kw, stride, offset, out_size):
    """``(C, sy, sx, N, hh, ww)``: entry ``[c, r, q, n, a, b]`` is pixel
    ``(sy*a + r - top, sx*b + q - left)`` of ``x[n, c]`` (0 outside),
    ``hh = oh + ceil(kh/sy) - 1``, ``ww = ow + ceil(kw/sx) - 1``;
    ``offset`` ``(top, left)`` is the padding (negative: a crop)."""
    n, c, h, w = x.shape
    (sy, sx), (top, left), (oh, ow) = stride, offset, out_size
    hh, ww = oh + (kh - 1) // sy, ow + (kw - 1) // sx
    img = numpy.zeros((c, n, sy * hh, sx * ww), dtype=x.dtype)
    y0, y1 = max(0, -top), min(h, sy * hh - top)
    x0, x1 = max(0, -left), min(w, sx * ww - left)
    if y0 < y1 and x0 < x1:
        img[:, :, y0 + top:y1 + top, x0 + left:x1 + left] = \
            x[:, :, y0:y1, x0:x1].transpose(1, 0, 2, 3)
    img = img.reshape(c, n, hh, sy, ww, sx).transpose(0, 3, 5, 1, 2, 4)
    return img if sy == sx == 1 else numpy.ascontiguousarray(img)


def _columns(x, kh, kw, stride, offset, out_size):
    """im2col ``(C*kh*kw, N*oh*ow)``: entry ``[(c, j, i), (n, a, b)]`` is
    pixel ``(sy*a + j - top, sx*b + i - left)`` of ``x[n, c]``."""
    n, c, h, w = x.shape
    (sy, sx), (oh, ow) = stride, out_size
    if (kh, kw, stride, offset, out_size) == (1, 1, (1, 1), (0, 0), (h, w)):
        return _channel_major(x)
    img = _phase_image(x, kh, kw, stride, offset, out_size)
    col = numpy.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for j in range(kh):
        u, r = divmod(j, sy)
        for i in range(kw):
            v, q = divmod(i, sx)
            col[:, j, i] = img[:, r, q, :, u:u + oh, v:v + ow]
    return col.reshape(c * kh * kw, n * oh * ow)


def _taps(W, sy, sx):
    """``W (A, B, kh, kw)`` zero-padded to whole strides as ``(A, B, ku,
    sy, kv, sx)``, entry ``[., ., u, r, v, q] = W[., ., sy*u + r, sx*v +
    q]``."""
    a, b, kh, kw = W.shape
    ku, kv = _ceil_div(kh, sy), _ceil_div(kw, sx)
    if (ku * sy, kv * sx) != (kh, kw):
        W = numpy.pad(W, ((0, 0), (0, 0), (0, ku * sy - kh),
                          (0, kv * sx - kw)))
    return W.reshape(a, b, ku, sy, kv, sx)


class _Geometry(object):
    """The sizes of the convolution of ``x (N, C, H, W)`` by ``(O, C, kh,
    kw)`` that ``node`` computes (or whose gradient it does)."""

    def __init__(self, node, x_shape, out_c, kh, kw):
        self.n, self.c, h, w = x_shape
        self.out_c, self.kh, self.kw = out_c, kh, kw
        self.stride, self.pad = (node.sy, node.sx), (node.ph, node.pw)
        self.out_size = (
            _conv_utils.get_conv_outsize(h, kh, node.sy, node.ph,
                                         node.cover_all),
            _conv_utils.get_conv_outsize(w, kw, node.sx, node.pw,
                                         node.cover_all))
        self.ku, self.kv = _ceil_div(kh, node.sy), _ceil_div(kw, node.sx)
        self.phases = node.sy * node.sx

    def columns(self, x):
        return _columns(x, self.kh, self.kw, self.stride, self.pad,
                        self.out_size)

    def phase_matrix(self, x):
        """:func:`_phase_image` as ``(C*sy*sx, N*hh*ww)``."""
        return _phase_image(x, self.kh, self.kw, self.stride, self.pad,
                            self.out_size).reshape(self.c * self.phases, -1)

    @property
    def by_phase(self):
        """Whether the stride phases' shifted outputs are smaller than
        ``col`` and their product at most 1.5x ``col``'s."""
        oh, ow = self.out_size
        shifted = self.ku * self.kv * (oh + self.ku - 1) * (ow + self.kv - 1)
        col = self.kh * self.kw * oh * ow
        return (self.out_c * shifted < self.c * col
                and shifted * self.phases <= 1.5 * col)


# -- Convolution2DFunction ---------------------------------------------------
def _convolution(self, x, W, b):
    """``y (N, O, oh, ow)`` of ``x (N, C, H, W)`` and ``W (O, C, kh, kw)``;
    ``y``'s memory is ``(O, N, oh, ow)``."""
    g = _Geometry(self, x.shape, *W.shape[:1] + W.shape[2:])
    if not (_fast(self, x, W, b) and min(g.out_size) > 0):
        return _ORIGINAL['conv'][1](self, x, W, b)
    y = (_conv_by_phase if g.by_phase else _conv_by_columns)(g, x, W)
    if b is not None:
        y += b[:, None, None, None]
    return y.transpose(1, 0, 2, 3),


def _conv_by_columns(g, x, W):
    """``(O, N, oh, ow)``: ``W (O, C*kh*kw) @ col``."""
    return numpy.dot(W.reshape(g.out_c, -1), g.columns(x)).reshape(
        (g.out_c, g.n) + g.out_size)


def _conv_by_phase(g, x, W):
    """``(O, N, oh, ow)``: ``z[(o, u, v), (n, a', b')] = sum_(c, r, q)
    W[o, c, sy*u + r, sx*v + q] phase[c, r, q, n, a', b']``, then
    ``y[o, n, a, b] = sum_(u, v) z[o, u, v, n, a + u, b + v]``."""
    oh, ow = g.out_size
    taps = _taps(W, *g.stride).transpose(0, 2, 4, 1, 3, 5)
    z = numpy.dot(taps.reshape(g.out_c * g.ku * g.kv, -1),
                  g.phase_matrix(x))
    z = z.reshape(g.out_c, g.ku, g.kv, g.n, oh + g.ku - 1, ow + g.kv - 1)
    y = z[:, 0, 0, :, :oh, :ow].copy()
    for u in range(g.ku):
        for v in range(g.kv):
            if u or v:
                y += z[:, u, v, :, u:u + oh, v:v + ow]
    return y


# -- Convolution2DGradW ------------------------------------------------------
def _convolution_grad_w(self, x, gy):
    """``gW (O, C, kh, kw)`` of ``x (N, C, H, W)`` and
    ``gy (N, O, oh, ow)``."""
    g = _Geometry(self, x.shape, gy.shape[1], self.kh, self.kw)
    if not (_fast(self, x, gy) and gy.shape[2:] == g.out_size):
        return _ORIGINAL['grad_w'][1](self, x, gy)
    gW = (_grad_w_by_phase if g.by_phase else _grad_w_by_columns)(g, x, gy)
    return gW.astype(self.W_dtype, copy=False),


def _grad_w_by_columns(g, x, gy):
    """``gy (O, N*oh*ow) @ col.T``."""
    return numpy.dot(_channel_major(gy), g.columns(x).T).reshape(
        g.out_c, g.c, g.kh, g.kw)


def _grad_w_by_phase(g, x, gy):
    """``gW[o, c, sy*u + r, sx*v + q] = sum_(n, a', b') gy[n, o, a' - u,
    b' - v] phase[c, r, q, n, a', b']`` (an im2col of ``gy``)."""
    oh, ow = g.out_size
    shifted = _columns(gy, g.ku, g.kv, (1, 1), (g.ku - 1, g.kv - 1),
                       (oh + g.ku - 1, ow + g.kv - 1))
    gW = numpy.dot(shifted, g.phase_matrix(x).T)
    # shifted's rows are (o, ku - 1 - u, kv - 1 - v)
    gW = gW.reshape((g.out_c, g.ku, g.kv, g.c) + g.stride)[:, ::-1, ::-1]
    gW = gW.transpose(0, 3, 1, 4, 2, 5).reshape(
        g.out_c, g.c, g.ku * g.stride[0], g.kv * g.stride[1])
    return numpy.ascontiguousarray(gW[:, :, :g.kh, :g.kw])


# -- Deconvolution2DFunction -------------------------------------------------
def _deconvolution(self, x, W, b):
    """``y (N, Cout, outh, outw)`` of ``x (N, Cin, h, w)`` and ``W (Cin,
    Cout, kh, kw)``: :func:`_subpixel` where its ``col`` is no larger and
    its product at most 1.5x :func:`_col2im`'s."""
    if not _fast(self, x, W, b):
        return _ORIGINAL['deconv'][1](self, x, W, b)
    in_c, out_c, kh, kw = W.shape
    h, w = x.shape[2:]
    # per image: subpixel's col has in_c * taps * ~outh*outw / (sy*sx)
    # numbers, col2im's products out_c * kh*kw * h*w
    taps = _ceil_div(kh, self.sy) * _ceil_div(kw, self.sx)
    subpixel, products = taps * self.outh * self.outw, kh * kw * h * w
    if (in_c * subpixel <= out_c * products * self.sy * self.sx
            and subpixel <= 1.5 * products):
        y = _subpixel(self, x, W)
    else:
        y = _col2im(self, x, W)
    if b is not None:
        y += b[:, None, None]
    return y,


def _col2im(node, x, W):
    """Chainer's way: ``W.T (Cout*kh*kw, Cin) @ x``, summed into the image
    by chainer's ``col2im``."""
    n, in_c, h, w = x.shape
    out_c, kh, kw = W.shape[1:]
    gcol = numpy.dot(W.reshape(in_c, -1).T, _channel_major(x))
    gcol = gcol.reshape(out_c, kh, kw, n, h, w).transpose(3, 0, 1, 2, 4, 5)
    return _conv_utils.col2im_cpu(gcol, node.sy, node.sx, node.ph, node.pw,
                                  node.outh, node.outw)


def _subpixel(node, x, W):
    """The deconvolution as one stride-1 convolution: output pixel
    ``(sy*a + r, sx*b + q)`` sums ``x[:, :, a - u, b - v] W[:, :, sy*u +
    r, sx*v + q]``, so each phase ``(r, q)`` is a ``ceil(kh/sy) x
    ceil(kw/sx)`` kernel; the ``Cout*sy*sx`` phase channels of one product
    are interleaved into the image."""
    n, in_c = x.shape[:2]
    out_c = W.shape[1]
    sy, sx, ph, pw = node.sy, node.sx, node.ph, node.pw
    taps = _taps(W, sy, sx)[:, :, ::-1, :, ::-1]      # u' = ku - 1 - u
    ku, kv = taps.shape[2], taps.shape[4]
    # Only the rows a0 <= a < a0 + hz of each phase that the crop keeps.
    a0, b0 = ph // sy, pw // sx
    hz = _ceil_div(ph + node.outh, sy) - a0
    wz = _ceil_div(pw + node.outw, sx) - b0
    col = _columns(x, ku, kv, (1, 1), (ku - 1 - a0, kv - 1 - b0), (hz, wz))
    z = numpy.dot(taps.transpose(1, 3, 5, 0, 2, 4).reshape(
        out_c * sy * sx, -1), col).reshape(out_c, sy, sx, n, hz, wz)
    y = z.transpose(0, 3, 4, 1, 5, 2).reshape(out_c, n, hz * sy, wz * sx)
    top, left = ph - a0 * sy, pw - b0 * sx
    return y[:, :, top:top + node.outh, left:left + node.outw].transpose(
        1, 0, 2, 3)


_FAST = {'conv': _convolution, 'grad_w': _convolution_grad_w,
         'deconv': _deconvolution}


def _set(kernels):
    for name, (cls, original) in _ORIGINAL.items():
        cls._forward_cpu_core = kernels.get(name, original)


def install():
    """Put the fast kernels in place (repeated calls are harmless)."""
    _set(_FAST)


def installed():
    """Whether the fast kernels are in place."""
    return all(cls._forward_cpu_core is _FAST[name]
               for name, (cls, _) in _ORIGINAL.items())


@contextlib.contextmanager
def chainer_kernels():
    """Chainer's own CPU kernels inside the block (the tests'
    reference)."""
    before = {name: cls._forward_cpu_core
              for name, (cls, _) in _ORIGINAL.items()}
    _set({})
    try:
        yield
    finally:
        _set(before)
