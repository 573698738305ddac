"""Convolution and pooling kernels: im2col/col2im, the conv epilogues, a direct convolution
for few input channels, and max/average pooling.

Each kernel names the op of :class:`nnback.backends.conv_ops.ConvOps` it must match. The
backend checks dtypes (float32/float64, one for all arrays), C-contiguity and shapes
before calling one; the kernels assume valid input.

Batch chunks
------------
The im2col kernels work on a range of samples ``s0 .. s1`` and a column offset into the
``(c_in * kh * kw, m)`` matrix, so the backend can run a convolution chunk by chunk: im2col
of a few samples, the GEMM on those columns, the epilogue, while the chunk is still in
cache (see ``NumbaBackend.conv2d_forward``). With ``s0 = 0, s1 = n, col0 = 0`` they are the
whole-batch ops.

Activations
-----------
The epilogues take an activation code (:data:`ACTIVATION_CODES`): linear, relu and
leaky_relu are fused; sigmoid and tanh go through the transposing pass as linear and then
through the dense kernels' NumPy-exp passes (see :mod:`.activations`), in the reference's
order. Per element the formulas and rounding are the reference's (``maximum(z, 0)``,
``where(z > 0, z, z * alpha)``, ``where(y > 0, dy, 0 * dy)``, ``dy * y * (1 - y)``,
``dy * (1 - y * y)``).

Sums
----
A reduction over the batch (``db``, a direct convolution's ``dw``) keeps one partial sum
per output position and adds those at the end: each lane then sums in a fixed order and the
loop vectorizes without fastmath (a single running sum would be one long dependency chain).
The order differs from the reference's GEMM/pairwise sums, within the parity table.

Inner loops index 1-D row views (``dst = y[s, co]``) with the loop variable itself: an
index such as ``z[co, o + p]`` with a computed offset makes Numba check for negative
(wrap-around) indices at every element, which measured 5-10x slower (no vectorization).

Pooling sums (average pooling, and the backward passes where windows overlap) add in the
reference's order, so pooling is bit-identical to it.
"""

from __future__ import annotations

import numpy as np

from .runtime import kernel, reduction_kernel

__all__ = [
    "ACTIVATION_CODES",
    "avgpool_backward",
    "avgpool_forward",
    "col2im",
    "conv_direct_backward",
    "conv_direct_backward_pooled",
    "conv_direct_forward",
    "epilogue_backward",
    "epilogue_backward_pooled",
    "epilogue_forward",
    "im2col",
    "maxpool_backward",
    "maxpool_forward",
]

Array = np.ndarray  # annotations only: Numba infers the types from the arguments

#: Activation name -> the code the epilogue kernels take. sigmoid/tanh forward run as
#: linear here, then through :mod:`.activations` (NumPy's exp/tanh, as the reference).
ACTIVATION_CODES = {"linear": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4}


@kernel
def _act_forward(v, code, slope, zero):  # type: ignore[no-untyped-def]
    """``activation(v)`` for the codes fused forward (0, 1, 2); others pass ``v`` through."""
    if code == 1:
        return zero if v < zero else v  # NaN passes, as numpy.maximum
    if code == 2:
        return v if v > zero else v * slope
    return v


@kernel
def _act_backward(g, yv, code, slope, zero, one):  # type: ignore[no-untyped-def]
    """Reference ``activation_backward`` for one element (``g = dy``, ``yv = y``)."""
    if code == 1:
        return g if yv > zero else g * zero
    if code == 2:
        return g if yv > zero else g * slope
    if code == 3:
        return g * yv * (one - yv)
    if code == 4:
        return g * (one - yv * yv)
    return g


# ----------------------------------------------------------------------------------------
# im2col and col2im
# ----------------------------------------------------------------------------------------
@kernel
def _valid_q(j: int, sw: int, pw: int, w: int, ow: int) -> tuple[int, int]:
    """The output columns ``q`` whose input column ``q * sw + j - pw`` lies in ``[0, w)``."""
    lo = 0
    if pw > j:
        lo = (pw - j + sw - 1) // sw
    hi = 0
    if w - 1 + pw - j >= 0:
        hi = (w - 1 + pw - j) // sw + 1
    if hi > ow:
        hi = ow
    if lo > hi:
        lo = hi
    return lo, hi


@kernel
def im2col(
    x: Array,
    kh: int,
    kw: int,
    sh: int,
    sw: int,
    ph: int,
    pw: int,
    s0: int,
    s1: int,
    cols: Array,
    col0: int,
) -> None:
    """Reference ``ConvOps.im2col`` for samples ``s0 .. s1`` of ``x`` (n, c, h, w).

    Writes ``cols[:, col0 : col0 + (s1 - s0) * oh * ow]`` of the (c * kh * kw, m) matrix:
    ``cols[(ci * kh + i) * kw + j, col0 + ((s - s0) * oh + p) * ow + q]`` is
    ``x[s, ci, p * sh + i - ph, q * sw + j - pw]``, or 0 in the padding.

    The rows are short (``ow`` values), so the copy indexes the flat arrays with unsigned
    offsets (no wrap-around check, no view per row).
    """
    n, c, h, w = x.shape
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    m = cols.shape[1]
    zero = x.dtype.type(0)
    xf = x.reshape(n * c * h * w)
    cf = cols.reshape(cols.shape[0] * m)
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                r = (ci * kh + i) * kw + j
                lo, hi = _valid_q(j, sw, pw, w, ow)
                for s in range(s0, s1):
                    base = r * m + col0 + (s - s0) * oh * ow
                    for p in range(oh):
                        row = p * sh + i - ph
                        o = np.uint64(base + p * ow)
                        if row < 0 or row >= h:
                            for q in range(ow):
                                cf[o + np.uint64(q)] = zero
                        else:
                            src = np.uint64(((s * c + ci) * h + row) * w + lo * sw + j - pw)
                            for q in range(lo):
                                cf[o + np.uint64(q)] = zero
                            if sw == 1:
                                for q in range(hi - lo):
                                    cf[o + np.uint64(lo + q)] = xf[src + np.uint64(q)]
                            else:
                                for q in range(hi - lo):
                                    cf[o + np.uint64(lo + q)] = xf[src + np.uint64(q * sw)]
                            for q in range(hi, ow):
                                cf[o + np.uint64(q)] = zero


@kernel
def col2im(
    cols: Array,
    col0: int,
    kh: int,
    kw: int,
    sh: int,
    sw: int,
    ph: int,
    pw: int,
    s0: int,
    s1: int,
    dx: Array,
) -> None:
    """Reference ``ConvOps.col2im`` for samples ``s0 .. s1``: fills ``dx[s0:s1]`` (n, c, h, w).

    The columns ``col0 ..`` of ``cols`` hold those samples' patches. Every pixel sums its
    entries in the reference's order (window offsets (i, j) row-major, starting from 0), so
    the result is bit-identical.
    """
    n, c, h, w = dx.shape
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    m = cols.shape[1]
    zero = dx.dtype.type(0)
    cf = cols.reshape(cols.shape[0] * m)
    xf = dx.reshape(n * c * h * w)
    for s in range(s0, s1):
        base = col0 + (s - s0) * oh * ow
        for ci in range(c):
            plane = dx[s, ci].reshape(h * w)
            for a in range(h * w):
                plane[a] = zero
            for i in range(kh):
                for j in range(kw):
                    r = (ci * kh + i) * kw + j
                    lo, hi = _valid_q(j, sw, pw, w, ow)
                    first = lo * sw + j - pw
                    for p in range(oh):
                        row = p * sh + i - ph
                        if row < 0 or row >= h or hi <= lo:
                            continue
                        o = np.uint64(r * m + base + p * ow + lo)
                        d = np.uint64(((s * c + ci) * h + row) * w + first)
                        if sw == 1:
                            for t in range(hi - lo):
                                xf[d + np.uint64(t)] += cf[o + np.uint64(t)]
                        else:
                            for t in range(hi - lo):
                                xf[d + np.uint64(t * sw)] += cf[o + np.uint64(t)]


# ----------------------------------------------------------------------------------------
# Epilogues
# ----------------------------------------------------------------------------------------
@kernel
def epilogue_forward(
    z: Array, col0: int, b: Array, y: Array, s0: int, s1: int, code: int, alpha: float
) -> None:
    """Reference ``ConvOps.conv_bias_activation`` for samples ``s0 .. s1``.

    ``z`` (c_out, m) channel-major, its columns ``col0 ..`` those samples'; ``b`` (c_out,);
    ``y`` (n, c_out, P) receives ``activation(z + b)`` (code 0, 1 or 2; see the module).
    """
    c_out = z.shape[0]
    npos = y.shape[2]
    zero = y.dtype.type(0)
    slope = y.dtype.type(alpha)
    for s in range(s0, s1):
        o = col0 + (s - s0) * npos
        for co in range(c_out):
            bv = b[co]
            src = z[co, o : o + npos]
            dst = y[s, co]
            for p in range(npos):
                dst[p] = _act_forward(src[p] + bv, code, slope, zero)


@kernel
def epilogue_backward(
    dy: Array,
    y: Array,
    s0: int,
    s1: int,
    dz: Array,
    col0: int,
    db_parts: Array,
    code: int,
    alpha: float,
) -> None:
    """Reference ``ConvOps.conv_activation_bias_backward`` for samples ``s0 .. s1``.

    ``dy``, ``y`` (n, c_out, P); writes ``dz[:, col0 + (s - s0) * P + p]`` (channel-major,
    (c_out, m)) and adds each value into ``db_parts[co, p]`` (c_out, P), whose row sums are
    ``db`` once every sample is in.
    """
    c_out = dz.shape[0]
    npos = dy.shape[2]
    zero = dy.dtype.type(0)
    one = dy.dtype.type(1)
    slope = dy.dtype.type(alpha)
    for s in range(s0, s1):
        o = col0 + (s - s0) * npos
        for co in range(c_out):
            g_row = dy[s, co]
            y_row = y[s, co]
            dst = dz[co, o : o + npos]
            parts = db_parts[co]
            for p in range(npos):
                g = _act_backward(g_row[p], y_row[p], code, slope, zero, one)
                dst[p] = g
                parts[p] += g


# ----------------------------------------------------------------------------------------
# Direct convolution (stride 1, few input channels)
# ----------------------------------------------------------------------------------------
@kernel
def conv_direct_forward(x: Array, w: Array, b: Array, y: Array, code: int, alpha: float) -> None:
    """Reference ``ConvOps.conv2d_forward`` (y only) for stride 1 and no padding (the
    backend pads ``x`` first); ``x`` (n, c_in, h, wd), ``w`` (c_out, c_in, kh, kw), ``b``
    (c_out,), ``y`` (n, c_out, oh, ow); activation code 0, 1 or 2.

    Every output plane is computed on "wide" rows: with ``x`` flattened per channel,
    output ``(p, q)`` at flat position ``t = p * wd + q`` is ``sum w[r] * x[t + i * wd + j]``,
    one contiguous, vectorized pass per weight over ``(oh - 1) * wd + ow`` positions (the
    ``wd - ow`` positions per row past the output are computed and dropped). Sums run over
    (ci, i, j) in row-major order, then the bias is added.
    """
    n, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    oh = y.shape[2]
    ow = y.shape[3]
    span = (oh - 1) * wd + ow
    zero = y.dtype.type(0)
    slope = y.dtype.type(alpha)
    xf = x.reshape(n, c_in, h * wd)
    acc = np.empty(span, dtype=y.dtype)
    for s in range(n):
        for co in range(c_out):
            if kh == 3 and kw == 3:
                # The nine taps of a channel in one pass (the same sums in the same order
                # as tap by tap; acc is loaded and stored once per channel: 0.52 -> 0.32 ms for
                # the CNN's first layer at batch 32).
                for ci in range(c_in):
                    _taps33(acc, xf[s, ci], w[co, ci], wd, span, ci == 0, zero)
            else:
                for t in range(span):
                    acc[t] = zero
                for ci in range(c_in):
                    for i in range(kh):
                        for j in range(kw):
                            wv = w[co, ci, i, j]
                            off = i * wd + j
                            src = xf[s, ci, off : off + span]
                            for t in range(span):
                                acc[t] += wv * src[t]
            bv = b[co]
            for p in range(oh):
                row = acc[p * wd : p * wd + ow]
                dst = y[s, co, p]
                for q in range(ow):
                    dst[q] = _act_forward(row[q] + bv, code, slope, zero)


@kernel
def _taps33(acc, src, wk, wd, span, first, zero):  # type: ignore[no-untyped-def]
    """``acc[t] (+)= sum of the 3x3 taps wk[i, j] * src[t + i * wd + j]``, added one tap
    at a time from (0, 0) row-major, onto 0 when ``first`` (as the tap-by-tap loop)."""
    w00, w01, w02 = wk[0, 0], wk[0, 1], wk[0, 2]
    w10, w11, w12 = wk[1, 0], wk[1, 1], wk[1, 2]
    w20, w21, w22 = wk[2, 0], wk[2, 1], wk[2, 2]
    x00, x01, x02 = src[0:span], src[1 : 1 + span], src[2 : 2 + span]
    x10, x11, x12 = src[wd : wd + span], src[wd + 1 : wd + 1 + span], src[wd + 2 : wd + 2 + span]
    r = 2 * wd
    x20, x21, x22 = src[r : r + span], src[r + 1 : r + 1 + span], src[r + 2 : r + 2 + span]
    for t in range(span):
        a = (zero if first else acc[t]) + w00 * x00[t]
        a = a + w01 * x01[t]
        a = a + w02 * x02[t]
        a = a + w10 * x10[t]
        a = a + w11 * x11[t]
        a = a + w12 * x12[t]
        a = a + w20 * x20[t]
        a = a + w21 * x21[t]
        acc[t] = a + w22 * x22[t]


@reduction_kernel
def _dots33(g, src, wd, span, out):  # type: ignore[no-untyped-def]
    """``out[i, j] += dot(g, src[i * wd + j :][:span])`` for the nine 3x3 taps in one
    pass over ``g`` (vector lanes per tap, reassociated as :func:`_dot`)."""
    x00, x01, x02 = src[0:span], src[1 : 1 + span], src[2 : 2 + span]
    x10, x11, x12 = src[wd : wd + span], src[wd + 1 : wd + 1 + span], src[wd + 2 : wd + 2 + span]
    r = 2 * wd
    x20, x21, x22 = src[r : r + span], src[r + 1 : r + 1 + span], src[r + 2 : r + 2 + span]
    zero = g.dtype.type(0)
    d00 = d01 = d02 = d10 = d11 = d12 = d20 = d21 = d22 = zero
    for t in range(span):
        v = g[t]
        d00 += v * x00[t]
        d01 += v * x01[t]
        d02 += v * x02[t]
        d10 += v * x10[t]
        d11 += v * x11[t]
        d12 += v * x12[t]
        d20 += v * x20[t]
        d21 += v * x21[t]
        d22 += v * x22[t]
    out[0, 0] += d00
    out[0, 1] += d01
    out[0, 2] += d02
    out[1, 0] += d10
    out[1, 1] += d11
    out[1, 2] += d12
    out[2, 0] += d20
    out[2, 1] += d21
    out[2, 2] += d22


@reduction_kernel
def _dot(a, b, count):  # type: ignore[no-untyped-def]
    """``sum(a[t] * b[t] for t < count)`` in vector lanes (reassociated; see runtime)."""
    total = a.dtype.type(0)
    for t in range(count):
        total += a[t] * b[t]
    return total


@kernel
def conv_direct_backward(
    dy: Array, y: Array, x: Array, dw: Array, db: Array, code: int, alpha: float
) -> None:
    """Reference ``ConvOps.conv2d_backward`` without ``dx``, for stride 1 and no padding
    (the backend pads ``x`` first): fills ``dw`` (c_out, c_in, kh, kw) and ``db`` (c_out,).

    Fused: the activation backward (``dz`` is never stored), the bias gradient and the
    weight gradient, sample by sample (one sample's ``x`` and ``dz`` stay in L1). On wide
    rows as in :func:`conv_direct_forward`: ``g`` holds ``dz`` of one plane at
    ``p * wd + q`` with zeros past each row's ``ow`` outputs, so ``dw[co, ci, i, j]`` gains
    the dot product of ``g`` with ``x[s, ci]`` shifted by ``i * wd + j``, and ``db[co]``
    the sum of ``g`` (vectorized dot products, :func:`_dot`; summed over the batch in
    order).
    """
    n, c_in, h, wd = x.shape
    c_out, _, kh, kw = dw.shape
    oh = y.shape[2]
    ow = y.shape[3]
    span = (oh - 1) * wd + ow
    zero = dy.dtype.type(0)
    one = dy.dtype.type(1)
    slope = dy.dtype.type(alpha)
    xf = x.reshape(n, c_in, h * wd)
    g = np.zeros(span, dtype=dy.dtype)
    ones = np.ones(span, dtype=dy.dtype)
    dw[...] = zero
    db[...] = zero
    for s in range(n):
        for co in range(c_out):
            for p in range(oh):
                g_out = g[p * wd : p * wd + ow]
                dy_row = dy[s, co, p]
                y_row = y[s, co, p]
                for q in range(ow):
                    g_out[q] = _act_backward(dy_row[q], y_row[q], code, slope, zero, one)
            _add_plane(g, ones, xf[s], wd, span, dw[co], db[co : co + 1])


@reduction_kernel
def _add_plane(g, ones, xs, wd, span, dwc, dbc):  # type: ignore[no-untyped-def]
    """One plane ``g`` of ``dz`` on wide rows into its channel's gradients: ``dbc[0]``
    gains its sum and ``dwc[ci, i, j]`` its dot product with sample plane ``xs[ci]``
    shifted by ``i * wd + j`` (nine at once for 3x3 kernels, :func:`_dots33`)."""
    c_in, kh, kw = dwc.shape
    dbc[0] += _dot(g, ones, span)
    for ci in range(c_in):
        if kh == 3 and kw == 3:
            _dots33(g, xs[ci], wd, span, dwc[ci])
            continue
        for i in range(kh):
            for j in range(kw):
                off = i * wd + j
                dwc[ci, i, j] += _dot(g, xs[ci, off : off + span], span)


# ----------------------------------------------------------------------------------------
# Pooling
# ----------------------------------------------------------------------------------------
@kernel
def _take(v, best):  # type: ignore[no-untyped-def]
    """Whether ``v`` replaces ``best``: greater, or the first NaN (numpy.argmax's rule)."""
    return (v > best) | ((v != v) & (best == best))


@kernel
def _max4_plane(xf, yf, af, xb, yb, w, oh, ow, sh, sw):  # type: ignore[no-untyped-def]
    """One plane of 2x2 windows on the flat arrays (unsigned offsets: the loads vectorize
    as interleaved groups), the four candidates kept in registers."""
    for p in range(oh):
        r0 = xb + p * sh * w
        o = np.uint64(yb + p * ow)
        for q in range(ow):
            i = np.uint64(r0 + q * sw)
            best = xf[i]
            k = 0
            v = xf[i + np.uint64(1)]
            t = _take(v, best)
            best = v if t else best
            k = 1 if t else k
            v = xf[i + np.uint64(w)]
            t = _take(v, best)
            best = v if t else best
            k = 2 if t else k
            v = xf[i + np.uint64(w + 1)]
            t = _take(v, best)
            best = v if t else best
            k = 3 if t else k
            yf[o + np.uint64(q)] = best
            af[o + np.uint64(q)] = k


@kernel
def _max22_planes(xf, yf, af, planes, h, w, oh, ow):  # type: ignore[no-untyped-def]
    """2x2 windows at stride 2, plane by plane, on "wide" rows (as the direct convolution):
    ``wide[u]`` is the maximum of the window at flat input position ``2 * u`` for every
    ``u`` up to the plane's last output, one long vectorized pass (the windows starting on
    odd rows, half the work, are computed and dropped), then each output row is copied out
    of ``wide[p * w : p * w + ow]``. An output row is only ``ow`` values (13 or 5 here),
    too short to vectorize on its own: this measured 5x faster than row by row."""
    span = (oh - 1) * w + ow
    wide = np.empty(span, dtype=yf.dtype)
    widek = np.empty(span, dtype=np.int32)
    two = np.uint64(2)
    one = np.uint64(1)
    down = np.uint64(w)
    down1 = np.uint64(w + 1)
    for plane in range(planes):
        src = xf[plane * h * w : (plane + 1) * h * w]
        for t in range(span):
            u = two * np.uint64(t)
            best = src[u]
            k = np.int32(0)
            v = src[u + one]
            take = _take(v, best)
            best = v if take else best
            k = np.int32(1) if take else k
            v = src[u + down]
            take = _take(v, best)
            best = v if take else best
            k = np.int32(2) if take else k
            v = src[u + down1]
            take = _take(v, best)
            best = v if take else best
            k = np.int32(3) if take else k
            wide[t] = best
            widek[t] = k
        for p in range(oh):
            o = plane * oh * ow + p * ow
            dst = yf[o : o + ow]
            dst_k = af[o : o + ow]
            got = wide[p * w : p * w + ow]
            got_k = widek[p * w : p * w + ow]
            for q in range(ow):
                dst[q] = got[q]
                dst_k[q] = got_k[q]


@kernel
def maxpool_forward(x: Array, ph: int, pw: int, sh: int, sw: int, y: Array, argmax: Array) -> None:
    """Reference ``ConvOps.maxpool2d_forward``: ``y`` and int32 ``argmax`` (n, c, oh, ow).

    Window offsets are visited row-major; an offset wins when its value is greater than the
    best so far (so the first maximum wins ties) or when it is the first NaN (numpy.argmax
    treats NaN as the maximum). Vectorized across an output row.
    """
    n, c, h, w = x.shape
    oh = y.shape[2]
    ow = y.shape[3]
    if ph == 2 and pw == 2:
        xf = x.reshape(n * c * h * w)
        yf = y.reshape(n * c * oh * ow)
        af = argmax.reshape(n * c * oh * ow)
        if sh == 2 and sw == 2:
            _max22_planes(xf, yf, af, n * c, h, w, oh, ow)
            return
        for plane in range(n * c):
            _max4_plane(xf, yf, af, plane * h * w, plane * oh * ow, w, oh, ow, sh, sw)
        return
    for s in range(n):
        for ci in range(c):
            for p in range(oh):
                r0 = p * sh
                y_row = y[s, ci, p]
                a_row = argmax[s, ci, p]
                src = x[s, ci, r0, ::sw]
                for q in range(ow):
                    y_row[q] = src[q]
                    a_row[q] = 0
                for i in range(ph):
                    for j in range(pw):
                        k = i * pw + j
                        if k == 0:
                            continue
                        src = x[s, ci, r0 + i, j::sw]
                        for q in range(ow):
                            v = src[q]
                            best = y_row[q]
                            take = (v > best) | ((v != v) & (best == best))
                            y_row[q] = v if take else best
                            a_row[q] = k if take else a_row[q]


@kernel
def _max22_backward_planes(dy, argmax, dx):  # type: ignore[no-untyped-def]
    """:func:`maxpool_backward` for 2x2 windows at stride 2 (which do not overlap): one
    pass that writes every pixel of a window once, ``0 + g`` at its argmax and ``0 + g * 0``
    elsewhere (the reference's sum, bit for bit: NaN beside an infinite ``g`` included),
    and zeros in the row and column an odd size leaves outside every window. Measured 3x
    faster than zeroing the plane and scattering four offsets into it."""
    n, c, h, w = dx.shape
    oh = dy.shape[2]
    ow = dy.shape[3]
    zero = dx.dtype.type(0)
    for s in range(n):
        for ci in range(c):
            for p in range(oh):
                g_row = dy[s, ci, p]
                a_row = argmax[s, ci, p]
                top = dx[s, ci, 2 * p]
                bottom = dx[s, ci, 2 * p + 1]
                # Pixel by pixel along the two rows (contiguous stores; each reads its
                # window's g and argmax at t // 2), which vectorizes.
                for t in range(2 * ow):
                    q = t >> 1
                    j = t & 1
                    g = g_row[q]
                    k = a_row[q]
                    off = g * zero
                    top[t] = zero + (g if k == j else off)
                    bottom[t] = zero + (g if k == j + 2 else off)
                for t in range(2 * ow, w):
                    top[t] = zero
                    bottom[t] = zero
            for r in range(2 * oh, h):
                row = dx[s, ci, r]
                for t in range(w):
                    row[t] = zero


@kernel
def maxpool_backward(
    dy: Array, argmax: Array, ph: int, pw: int, sh: int, sw: int, dx: Array
) -> None:
    """Reference ``ConvOps.maxpool2d_backward``: fills ``dx`` (n, c, h, w).

    Each plane is zeroed and every window offset ``k`` adds ``dy`` where ``argmax == k``
    and ``dy * 0`` elsewhere (the reference's ``dy * hit``, NaN for an infinite ``dy``
    included), in the reference's order, so overlapping windows sum as it does.
    """
    n, c, h, w = dx.shape
    oh = dy.shape[2]
    ow = dy.shape[3]
    zero = dx.dtype.type(0)
    if ph == 2 and pw == 2 and sh == 2 and sw == 2:
        _max22_backward_planes(dy, argmax, dx)
        return
    xf = dx.reshape(n * c * h * w)
    for s in range(n):
        for ci in range(c):
            plane = dx[s, ci].reshape(h * w)
            for a in range(h * w):
                plane[a] = zero
            xb = (s * c + ci) * h * w
            for i in range(ph):
                for j in range(pw):
                    k = i * pw + j
                    for p in range(oh):
                        d = xb + (p * sh + i) * w + j
                        g_row = dy[s, ci, p]
                        a_row = argmax[s, ci, p]
                        for q in range(ow):
                            g = g_row[q]
                            xf[np.uint64(d + q * sw)] += g if a_row[q] == k else g * zero


@kernel
def avgpool_forward(x: Array, ph: int, pw: int, sh: int, sw: int, y: Array) -> None:
    """Reference ``ConvOps.avgpool2d_forward``: the window's values summed row-major from
    the first, then divided by ``ph * pw`` (numpy.mean's order and rounding)."""
    n, c, _, _ = x.shape
    oh = y.shape[2]
    ow = y.shape[3]
    count = y.dtype.type(ph * pw)
    for s in range(n):
        for ci in range(c):
            for p in range(oh):
                r0 = p * sh
                y_row = y[s, ci, p]
                src = x[s, ci, r0, ::sw]
                for q in range(ow):
                    y_row[q] = src[q]
                for i in range(ph):
                    for j in range(pw):
                        if i == 0 and j == 0:
                            continue
                        src = x[s, ci, r0 + i, j::sw]
                        for q in range(ow):
                            y_row[q] += src[q]
                for q in range(ow):
                    y_row[q] = y_row[q] / count


@kernel
def avgpool_backward(dy: Array, ph: int, pw: int, sh: int, sw: int, dx: Array) -> None:
    """Reference ``ConvOps.avgpool2d_backward``: ``dy / (ph * pw)`` added to every pixel of
    its window, planes zeroed first, windows in the reference's order."""
    n, c, h, w = dx.shape
    oh = dy.shape[2]
    ow = dy.shape[3]
    zero = dx.dtype.type(0)
    count = dx.dtype.type(ph * pw)
    for s in range(n):
        for ci in range(c):
            plane = dx[s, ci].reshape(h * w)
            for a in range(h * w):
                plane[a] = zero
            for i in range(ph):
                for j in range(pw):
                    for p in range(oh):
                        dst = dx[s, ci, p * sh + i, j::sw]
                        g_row = dy[s, ci, p]
                        for q in range(ow):
                            dst[q] += g_row[q] / count


# ----------------------------------------------------------------------------------------
# Backward of a convolution followed by 2x2 max pooling at stride 2, fused
# ----------------------------------------------------------------------------------------
# ``ConvOps.conv2d_maxpool_backward`` is ``maxpool2d_backward`` then ``conv2d_backward``.
# The pooling's input gradient is zero but at each window's argmax, so these kernels never
# write it: they build the convolution's ``dz`` straight from the pooled gradient ``dp``,
# the argmax and the convolution's output ``y`` (for the activation's derivative). On the
# CNN at batch 128 the first convolution's pooled gradient alone is 11 MB written, then
# read twice. (Here, not in a module of their own: Numba's cache of a kernel is refreshed
# when its own source file changes, and these call this module's helpers.)
#
# Bits: ``dz`` at an argmax is ``activation_backward(0 + dp, y)``, as the reference
# computes it from the zeroed plane the pooling's backward pass adds into; elsewhere it is
# 0, where the reference has ``activation_backward(dp * 0, y)``, also 0 for a finite ``dp``
# (the backend checks that ``dp`` is finite, else the reference runs, so an infinite
# gradient turns into NaN as it does there). An argmax outside 0..3 sends nothing.
@kernel
def epilogue_backward_pooled(
    dp: Array,
    argmax: Array,
    y: Array,
    s0: int,
    s1: int,
    dz: Array,
    col0: int,
    db_parts: Array,
    code: int,
    alpha: float,
) -> None:
    """``epilogue_backward`` of the gradient ``maxpool_backward(dp, argmax)`` would give,
    for samples ``s0 .. s1``: ``dz`` (c_out, m) channel-major, the samples' columns from
    ``col0``; each nonzero value also added into ``db_parts[co, position]``."""
    c_out = y.shape[1]
    oh = y.shape[2]
    ow = y.shape[3]
    npos = oh * ow
    ph = dp.shape[2]
    pw = dp.shape[3]
    zero = y.dtype.type(0)
    one = y.dtype.type(1)
    slope = y.dtype.type(alpha)
    for s in range(s0, s1):
        o = col0 + (s - s0) * npos
        for co in range(c_out):
            dst = dz[co, o : o + npos]
            for t in range(npos):
                dst[t] = zero
            parts = db_parts[co]
            for p in range(ph):
                for q in range(pw):
                    k = argmax[s, co, p, q]
                    if k < 0 or k > 3:
                        continue
                    r = 2 * p + (k >> 1)
                    c = 2 * q + (k & 1)
                    g = _act_backward(
                        zero + dp[s, co, p, q], y[s, co, r, c], code, slope, zero, one
                    )
                    dst[r * ow + c] = g
                    parts[r * ow + c] += g


@kernel
def conv_direct_backward_pooled(
    dp: Array, argmax: Array, y: Array, x: Array, dw: Array, db: Array, code: int, alpha: float
) -> None:
    """``conv_direct_backward`` of the gradient ``maxpool_backward(dp, argmax)`` would give:
    ``dw`` (c_out, c_in, kh, kw) and ``db`` (c_out,) for stride 1 and no padding (the
    backend pads ``x``). The plane ``g`` of ``dz`` on wide rows is zero but at the argmax
    positions, then the same vectorized dot products."""
    n, c_in, h, wd = x.shape
    c_out, _, kh, kw = dw.shape
    oh = y.shape[2]
    ow = y.shape[3]
    ph = dp.shape[2]
    pw = dp.shape[3]
    span = (oh - 1) * wd + ow
    zero = y.dtype.type(0)
    one = y.dtype.type(1)
    slope = y.dtype.type(alpha)
    xf = x.reshape(n, c_in, h * wd)
    g = np.zeros(span, dtype=y.dtype)
    ones = np.ones(span, dtype=y.dtype)
    dw[...] = zero
    db[...] = zero
    for s in range(n):
        for co in range(c_out):
            for t in range(span):
                g[t] = zero
            for p in range(ph):
                for q in range(pw):
                    k = argmax[s, co, p, q]
                    if k < 0 or k > 3:
                        continue
                    r = 2 * p + (k >> 1)
                    c = 2 * q + (k & 1)
                    g[r * wd + c] = _act_backward(
                        zero + dp[s, co, p, q], y[s, co, r, c], code, slope, zero, one
                    )
            _add_plane(g, ones, xf[s], wd, span, dw[co], db[co : co + 1])
