"""The reference convolution and pooling ops, written once against ``self.xp``.

:class:`ConvOps` is a mixin of :class:`~nnback.backends.base.Backend`: these methods are
part of every backend, and accelerated backends override the pieces they fuse (im2col,
col2im, the epilogues, pooling) and fall back with ``super()``.

Layout
------
Images are NCHW batches: ``x`` is (n, c, h, w). A convolution's weights are
(c_out, c_in, kh, kw) and its bias (1, c_out). The output is (n, c_out, oh, ow) with
``oh = (h + 2 * ph - kh) // sh + 1`` (and the same for the width).

The convolution is the textbook im2col + GEMM. ``im2col`` lays the input patches out as
the columns of a (c_in * kh * kw, n * oh * ow) matrix ``cols``, so both GEMMs of a step are
one large product each::

    z   = W2 @ cols             # (c_out, n * oh * ow), W2 = w.reshape(c_out, -1)
    dW2 = dz @ cols.T           # (c_out, c_in * kh * kw)
    dcols = W2.T @ dz           # then col2im sums the patches back into dx

``z`` comes out channel-major, (c_out, n, oh, ow): the forward epilogue adds the bias,
applies the activation and transposes to NCHW in one pass, and the backward epilogue
does the reverse (activation backward, bias gradient, transpose back to channel-major).

Pooling has no padding and drops partial windows (``oh = (h - ph) // sh + 1``). Max
pooling keeps, for every output, the position of its maximum inside the window (row-major,
``0 .. ph * pw - 1``, the first one on ties), which is all its backward pass needs.
"""

from __future__ import annotations

from typing import Any

import numpy

from ..errors import InputError

Array = Any

#: Activations a convolution may fuse (softmax is a row-wise op of dense outputs).
CONV_ACTIVATIONS = ("linear", "relu", "leaky_relu", "sigmoid", "tanh")


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution or pooling window along one axis (0 if none fits)."""
    return max((size + 2 * padding - kernel) // stride + 1, 0)


def int_tuple(
    values: Any, length: int, minimum: int, maximum: int | None = None
) -> tuple[int, ...] | None:
    """``values`` as ``length`` Python ints in ``[minimum, maximum]``, or None (bools and
    non-integers included)."""
    try:
        items = tuple(values)
    except TypeError:
        return None
    if len(items) != length:
        return None
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int | numpy.integer):
            return None
        if v < minimum or (maximum is not None and v > maximum):
            return None
    return tuple(int(v) for v in items)


def kernel_geometry(
    x_shape: Any, kernel: Any, stride: Any, padding: Any, limit: int | None = None
) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...], tuple[int, int]] | None:
    """``((n, c, h, w), (kernel, stride, padding), (oh, ow))`` as Python ints, or None.

    For accelerated overrides: None means their kernels cannot take the arguments (not
    integers, out of range, no window fits, or window values above ``limit``), and the
    override falls back to the reference op, which explains or rejects them.
    """
    shape = int_tuple(x_shape, 4, 1)
    k = int_tuple(kernel, 2, 1, limit)
    s = int_tuple(stride, 2, 1, limit)
    p = int_tuple(padding, 2, 0, limit)
    if shape is None or k is None or s is None or p is None:
        return None
    oh = conv_output_size(shape[2], k[0], s[0], p[0])
    ow = conv_output_size(shape[3], k[1], s[1], p[1])
    if oh < 1 or ow < 1:
        return None
    return shape, (k, s, p), (oh, ow)


def _check_conv_activation(activation: str) -> None:
    if activation not in CONV_ACTIVATIONS:
        raise InputError(
            f"a convolution cannot fuse activation {activation!r}; expected one of "
            f"{', '.join(CONV_ACTIVATIONS)}"
        )


def _output_shape(
    x_shape: tuple[int, ...],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    what: str,
) -> tuple[int, int]:
    if len(x_shape) != 4:
        raise InputError(f"{what} expects an NCHW batch (n, c, h, w), got shape {x_shape}")
    oh = conv_output_size(x_shape[2], kernel[0], stride[0], padding[0])
    ow = conv_output_size(x_shape[3], kernel[1], stride[1], padding[1])
    if oh < 1 or ow < 1:
        raise InputError(
            f"{what}: a {kernel[0]}x{kernel[1]} window with stride {stride} and padding "
            f"{padding} does not fit images of {x_shape[2]}x{x_shape[3]}; use smaller windows "
            "or more padding"
        )
    return oh, ow


class ConvOps:
    """Convolution and pooling ops of every backend (see the module docstring)."""

    xp: Any

    # ------------------------------------------------------------------------------------
    # im2col and its adjoint
    # ------------------------------------------------------------------------------------
    def im2col(
        self,
        x: Array,
        kernel: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
    ) -> Array:
        """The patches of ``x`` as the columns of a matrix.

        Parameters
        ----------
        x : array (n, c, h, w)
        kernel, stride, padding : (int, int)
            Window size, step and zero padding (on both sides) along height and width.

        Returns
        -------
        cols : array (c * kh * kw, n * oh * ow)
            ``cols[(ci * kh + i) * kw + j, (s * oh + p) * ow + q]`` is
            ``x[s, ci, p * sh + i - ph, q * sw + j - pw]``, or 0 where that is padding.
        """
        xp = self.xp
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        oh, ow = _output_shape(x.shape, kernel, stride, padding, "im2col")
        if ph or pw:
            padded = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
            padded[:, :, ph : ph + h, pw : pw + w] = x
        else:
            padded = x
        cols = xp.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):
                rows = slice(i, i + sh * (oh - 1) + 1, sh)
                columns = slice(j, j + sw * (ow - 1) + 1, sw)
                cols[:, i, j] = xp.transpose(padded[:, :, rows, columns], (1, 0, 2, 3))
        return cols.reshape(c * kh * kw, n * oh * ow)

    def col2im(
        self,
        cols: Array,
        x_shape: tuple[int, int, int, int],
        kernel: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
    ) -> Array:
        """The adjoint of :meth:`im2col`: sums every column entry back into its pixel.

        Parameters
        ----------
        cols : array (c * kh * kw, n * oh * ow)
        x_shape : (n, c, h, w)
            The shape of the image batch ``cols`` was taken from.

        Returns
        -------
        dx : array (n, c, h, w)
        """
        xp = self.xp
        n, c, h, w = x_shape
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        oh, ow = _output_shape(tuple(x_shape), kernel, stride, padding, "col2im")
        if cols.shape != (c * kh * kw, n * oh * ow):
            raise InputError(
                f"col2im expects cols of shape {(c * kh * kw, n * oh * ow)} for images "
                f"{tuple(x_shape)}, got {cols.shape}"
            )
        blocks = cols.reshape(c, kh, kw, n, oh, ow)
        padded = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
        for i in range(kh):
            for j in range(kw):
                rows = slice(i, i + sh * (oh - 1) + 1, sh)
                columns = slice(j, j + sw * (ow - 1) + 1, sw)
                padded[:, :, rows, columns] += xp.transpose(blocks[:, i, j], (1, 0, 2, 3))
        if ph or pw:
            return self.copy(padded[:, :, ph : ph + h, pw : pw + w])  # type: ignore[attr-defined]
        return padded

    # ------------------------------------------------------------------------------------
    # The convolution's epilogues
    # ------------------------------------------------------------------------------------
    def conv_bias_activation(
        self, z: Array, b: Array, activation: str = "linear", alpha: float = 0.01
    ) -> Array:
        """Forward epilogue: ``y = activation(z + b)``, from channel-major to NCHW.

        Parameters
        ----------
        z : array (c_out, n, oh, ow)
            The GEMM's output ``W2 @ cols``, reshaped; not modified.
        b : array (1, c_out)
        activation : str
            One of ``CONV_ACTIVATIONS``.

        Returns
        -------
        y : array (n, c_out, oh, ow), C-contiguous
        """
        _check_conv_activation(activation)
        c_out = z.shape[0]
        y = self.xp.ascontiguousarray(self.xp.transpose(z, (1, 0, 2, 3)))
        y += b.reshape(1, c_out, 1, 1)
        if activation != "linear":
            y = self.activation_forward(y, activation, alpha)  # type: ignore[attr-defined]
        return y

    def conv_activation_bias_backward(
        self,
        dy: Array,
        y: Array,
        activation: str = "linear",
        alpha: float = 0.01,
        out_db: Array | None = None,
    ) -> tuple[Array, Array]:
        """Backward epilogue: the pre-activation gradient, channel-major, and ``db``.

        Parameters
        ----------
        dy : array (n, c_out, oh, ow)
            Gradient of the loss with respect to the layer's output ``y``; not modified.
        y : array (n, c_out, oh, ow)
            The layer's output from the forward pass.
        out_db : array (1, c_out) or (c_out,), optional
            Where to write ``db`` (returned then).

        Returns
        -------
        dz : array (c_out, n, oh, ow), C-contiguous
        db : array (1, c_out)
            The sums of ``dz`` over everything but the channel.
        """
        _check_conv_activation(activation)
        xp = self.xp
        dz = self.activation_backward(dy, y, activation, alpha)  # type: ignore[attr-defined]
        dz = xp.ascontiguousarray(xp.transpose(dz, (1, 0, 2, 3)))
        c_out = dz.shape[0]
        db = xp.sum(dz.reshape(c_out, -1), axis=1).reshape(1, c_out)
        if out_db is not None:
            out_db[...] = db.reshape(out_db.shape)
            db = out_db
        return dz, db

    # ------------------------------------------------------------------------------------
    # The convolution
    # ------------------------------------------------------------------------------------
    def conv2d_forward(
        self,
        x: Array,
        w: Array,
        b: Array,
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        activation: str = "linear",
        alpha: float = 0.01,
    ) -> tuple[Array, Array]:
        """``activation(conv2d(x, w) + b)`` through im2col + GEMM.

        Parameters
        ----------
        x : array (n, c_in, h, w)
        w : array (c_out, c_in, kh, kw)
        b : array (1, c_out)
        stride, padding : (int, int)
        activation : str
            One of ``CONV_ACTIVATIONS``.
        alpha : float
            Negative slope for ``"leaky_relu"``.

        Returns
        -------
        y : array (n, c_out, oh, ow)
        cols : array
            What :meth:`conv2d_backward` may reuse instead of recomputing it (here the
            im2col matrix of ``x``).
        """
        n = x.shape[0]
        c_out, c_in, kh, kw = w.shape
        if x.ndim != 4 or x.shape[1] != c_in:
            raise InputError(
                f"conv2d expects an input of shape (n, {c_in}, h, w) for weights of shape "
                f"{tuple(w.shape)}, got {tuple(x.shape)}"
            )
        oh, ow = _output_shape(x.shape, (kh, kw), stride, padding, "conv2d")
        cols = self.im2col(x, (kh, kw), stride, padding)
        z = self.matmul(w.reshape(c_out, c_in * kh * kw), cols)  # type: ignore[attr-defined]
        y = self.conv_bias_activation(z.reshape(c_out, n, oh, ow), b, activation, alpha)
        return y, cols

    def conv2d_backward(
        self,
        dy: Array,
        x: Array,
        w: Array,
        y: Array,
        cols: Array | None = None,
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        activation: str = "linear",
        alpha: float = 0.01,
        need_dx: bool = True,
        out: tuple[Array | None, Array | None] | None = None,
    ) -> tuple[Array | None, Array, Array]:
        """Backward pass of :meth:`conv2d_forward`.

        Parameters
        ----------
        dy : array (n, c_out, oh, ow)
            Gradient of the loss with respect to ``y``; not modified.
        x : array (n, c_in, h, w)
            The layer's input from the forward pass.
        w : array (c_out, c_in, kh, kw)
        y : array (n, c_out, oh, ow)
            The layer's output from the forward pass.
        cols : array, optional
            The second value :meth:`conv2d_forward` returned for this ``x`` (recomputed
            when None).
        need_dx : bool
            ``False`` skips the input gradient (the first layer does not need it).
        out : (dw, db), optional
            Arrays to write the parameter gradients into (either may be None), such as the
            model's flat gradient buffer: ``dw`` C-contiguous of ``w``'s shape and dtype,
            ``db`` of ``c_out`` values. A captured training step writes there too, with
            the same launches.

        Returns
        -------
        dx : array (n, c_in, h, w) or None
        dw : array (c_out, c_in, kh, kw)
        db : array (1, c_out)
        """
        c_out, c_in, kh, kw = w.shape
        out_dw, out_db = out if out is not None else (None, None)
        if cols is None:
            cols = self.im2col(x, (kh, kw), stride, padding)
        if out_db is not None and (out_db.size != c_out or out_db.dtype != dy.dtype):
            out_db = None
        dz, db = self.conv_activation_bias_backward(dy, y, activation, alpha, out_db=out_db)
        dz2 = dz.reshape(c_out, -1)
        if (
            out_dw is not None
            and tuple(out_dw.shape) == tuple(w.shape)
            and out_dw.dtype == dz.dtype
            and out_dw.flags.c_contiguous
        ):
            self.matmul(dz2, cols.T, out=out_dw.reshape(c_out, -1))  # type: ignore[attr-defined]
            dw = out_dw
        else:
            dw = self.matmul(dz2, cols.T).reshape(w.shape)  # type: ignore[attr-defined]
        dx = None
        if need_dx:
            dcols = self.matmul(w.reshape(c_out, -1).T, dz2)  # type: ignore[attr-defined]
            dx = self.col2im(dcols, tuple(x.shape), (kh, kw), stride, padding)
        return dx, dw, db

    def conv2d_maxpool_backward(
        self,
        dp: Array,
        argmax: Array,
        pool: tuple[int, int],
        pool_stride: tuple[int, int],
        x: Array,
        w: Array,
        y: Array,
        cols: Array | None = None,
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        activation: str = "linear",
        alpha: float = 0.01,
        need_dx: bool = True,
        out: tuple[Array | None, Array | None] | None = None,
    ) -> tuple[Array | None, Array, Array]:
        """Backward pass of :meth:`conv2d_forward` followed by :meth:`maxpool2d_forward`:
        :meth:`maxpool2d_backward` then :meth:`conv2d_backward`, without returning the
        gradient of the convolution's output (a backend may never form it).

        Parameters
        ----------
        dp : array (n, c_out, ph_out, pw_out)
            Gradient of the loss with respect to the pooled output; not modified.
        argmax : int array (n, c_out, ph_out, pw_out)
            The second value :meth:`maxpool2d_forward` returned.
        pool, pool_stride : (int, int)
            The pooling's window and stride.
        x, w, y, cols, stride, padding, activation, alpha, need_dx, out
            As :meth:`conv2d_backward` (``y`` the convolution's output, which the pooling
            read).

        Returns
        -------
        dx : array (n, c_in, h, w) or None
        dw : array (c_out, c_in, kh, kw)
        db : array (1, c_out)
        """
        dy = self.maxpool2d_backward(dp, argmax, tuple(y.shape), pool, pool_stride)
        return self.conv2d_backward(
            dy, x, w, y, cols, stride, padding, activation, alpha, need_dx, out
        )

    # ------------------------------------------------------------------------------------
    # Pooling
    # ------------------------------------------------------------------------------------
    def _windows(
        self, x: Array, pool: tuple[int, int], stride: tuple[int, int], what: str
    ) -> Array:
        """The pooling windows of ``x`` stacked: (n, c, ph * pw, oh, ow)."""
        oh, ow = _output_shape(tuple(x.shape), pool, stride, (0, 0), what)
        (ph, pw), (sh, sw) = pool, stride
        parts = [
            x[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
            for i in range(ph)
            for j in range(pw)
        ]
        return self.xp.stack(parts, axis=2)

    def maxpool2d_forward(
        self, x: Array, pool: tuple[int, int], stride: tuple[int, int]
    ) -> tuple[Array, Array]:
        """Max pooling without padding.

        Parameters
        ----------
        x : array (n, c, h, w)
        pool, stride : (int, int)

        Returns
        -------
        y : array (n, c, oh, ow)
        argmax : int32 array (n, c, oh, ow)
            Position of each maximum in its window, row-major (the first on ties; a NaN
            counts as the maximum, so it reaches the output).
        """
        windows = self._windows(x, pool, stride, "maxpool2d")
        argmax = self.xp.argmax(windows, axis=2)
        y = self.xp.take_along_axis(windows, argmax[:, :, None], axis=2)[:, :, 0]
        return y, argmax.astype("int32")

    def maxpool2d_backward(
        self,
        dy: Array,
        argmax: Array,
        x_shape: tuple[int, int, int, int],
        pool: tuple[int, int],
        stride: tuple[int, int],
    ) -> Array:
        """Backward pass of :meth:`maxpool2d_forward`: each ``dy`` goes to its maximum.

        Parameters
        ----------
        dy : array (n, c, oh, ow)
        argmax : int array (n, c, oh, ow)
            The second value of :meth:`maxpool2d_forward`.
        x_shape : (n, c, h, w)

        Returns
        -------
        dx : array (n, c, h, w)
            Overlapping windows (stride < pool) add their contributions.
        """
        xp = self.xp
        (ph, pw), (sh, sw) = pool, stride
        oh, ow = dy.shape[2], dy.shape[3]
        dx = xp.zeros(tuple(x_shape), dtype=dy.dtype)
        for i in range(ph):
            for j in range(pw):
                hit = (argmax == i * pw + j).astype(dy.dtype)
                rows = slice(i, i + sh * (oh - 1) + 1, sh)
                columns = slice(j, j + sw * (ow - 1) + 1, sw)
                dx[:, :, rows, columns] += dy * hit
        return dx

    def avgpool2d_forward(self, x: Array, pool: tuple[int, int], stride: tuple[int, int]) -> Array:
        """Average pooling without padding: (n, c, h, w) -> (n, c, oh, ow)."""
        windows = self._windows(x, pool, stride, "avgpool2d")
        return self.xp.mean(windows, axis=2)

    def avgpool2d_backward(
        self,
        dy: Array,
        x_shape: tuple[int, int, int, int],
        pool: tuple[int, int],
        stride: tuple[int, int],
    ) -> Array:
        """Backward pass of :meth:`avgpool2d_forward`: ``dy / (ph * pw)`` to every pixel
        of its window (overlaps add)."""
        xp = self.xp
        (ph, pw), (sh, sw) = pool, stride
        oh, ow = dy.shape[2], dy.shape[3]
        share = dy / (ph * pw)
        dx = xp.zeros(tuple(x_shape), dtype=dy.dtype)
        for i in range(ph):
            for j in range(pw):
                rows = slice(i, i + sh * (oh - 1) + 1, sh)
                columns = slice(j, j + sw * (ow - 1) + 1, sw)
                dx[:, :, rows, columns] += share
        return dx
