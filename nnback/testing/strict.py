"""A strict stand-in for a non-host device, to prove model code never copies to the host.

:func:`make_strict_namespace` returns an array module whose arrays (:class:`StrictArray`)
live on a named pretend device. They behave like CuPy arrays where CuPy is strict, and are
stricter where CuPy would quietly synchronise:

* implicit conversion to NumPy (``numpy.asarray(x)``, ``__array__``, the array interface,
  numpy functions and ufuncs, iteration, pickling) raises ``TypeError``;
* mixing a device array with a host ``numpy.ndarray`` (or a list) in an operator, an index
  or a namespace function raises ``TypeError``, and so does mixing two devices;
* Python and NumPy *scalars* are fine as operands, as on CuPy;
* ``float``/``int``/``bool``/``format`` of a 0-d array is allowed, as on CuPy, but each is
  an explicit host synchronisation and counted in ``namespace.host_syncs``; of an array with
  dimensions it raises ``TypeError``;
* transfers are explicit and counted: ``namespace.asarray(host_data)`` in ``to_device`` and
  :func:`strict_to_numpy` in ``to_host``.

:class:`StrictBackend` is the base :class:`~nnback.backends.base.Backend` on this namespace,
so every reference op runs on the pretend device. A fake-CuPy module can build on
:func:`make_strict_namespace` (the device name is a parameter) and reach the buffer behind an
array with :func:`unwrap_strict`, which is for implementing device-side functions only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy

from ..backends.base import Array, Backend
from ._strict_array import SCALAR_TYPES, StrictArray, mixing_error

__all__ = [
    "StrictArray",
    "StrictBackend",
    "StrictNamespace",
    "make_strict_namespace",
    "strict_to_numpy",
    "unwrap_strict",
]


class StrictNamespace:
    """The array module of one strict device: NumPy's functions, on :class:`StrictArray` only.

    Parameters
    ----------
    device : str
        The pretend device's name; arrays of two different names never mix.

    Attributes
    ----------
    host_syncs : int
        Explicit scalar reads (``float``, ``int``, ``bool``, ``format``, ``item`` of 0-d).
    to_device, to_host : int
        Explicit transfers: host data given to ``asarray``/``array``, and
        :func:`strict_to_numpy` calls.
    """

    ndarray = StrictArray
    dtype = numpy.dtype
    finfo = numpy.finfo
    iinfo = numpy.iinfo
    newaxis = None
    bool_ = numpy.bool_
    int32 = numpy.int32
    int64 = numpy.int64
    float32 = numpy.float32
    float64 = numpy.float64
    inf = numpy.inf
    nan = numpy.nan
    pi = numpy.pi
    __version__ = numpy.__version__

    def __init__(self, device: str = "strict:0") -> None:
        self.__name__ = f"nnback.testing.strict[{device}]"
        self.device = device
        self.reset_counters()

    def __repr__(self) -> str:
        return f"<strict array namespace on {self.device!r}>"

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not defined: say where to add one rather than "no attribute".
        raise AttributeError(
            f"the strict array namespace has no {name!r}; if CuPy provides it and the model "
            "needs it, add it to nnback/testing/strict.py"
        )

    def reset_counters(self) -> None:
        """Set ``host_syncs``, ``to_device`` and ``to_host`` back to zero."""
        self.host_syncs = 0
        self.to_device = 0
        self.to_host = 0

    def counters(self) -> dict[str, int]:
        """The counters as a dict, for assertions and messages."""
        return {"host_syncs": self.host_syncs, "to_device": self.to_device, "to_host": self.to_host}

    def _check_allowed(self, what: str) -> None:
        """Raise if the device cannot do ``what`` now (the fake CuPy refuses device
        operations while a stream is capturing); this plain namespace allows everything."""

    # Wrapping: the one place that decides what may cross into NumPy calls.
    def _unwrap(self, value: Any) -> Any:
        if isinstance(value, StrictArray):
            self._check_allowed("an array operation")
            if value._ns.device != self.device:
                raise TypeError(
                    f"mixing arrays of devices {value._ns.device!r} and {self.device!r}; "
                    "copy between devices explicitly"
                )
            return value._data
        if isinstance(value, SCALAR_TYPES):
            return value
        raise mixing_error(value, self.device)

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, numpy.ndarray):
            return StrictArray(value, self)
        if isinstance(value, numpy.generic):  # NumPy returns scalars where CuPy returns 0-d
            return StrictArray(numpy.asarray(value), self)
        return value

    def _out(self, out: Any) -> Any:
        if out is None:
            return None
        if not isinstance(out, StrictArray):
            raise mixing_error(out, self.device)
        return self._unwrap(out)

    # Transfers (explicit, counted) and allocation (on the device, free).
    def asarray(self, x: Any, dtype: Any = None) -> StrictArray:
        """``x`` as a device array; host data (arrays, lists, scalars) is copied and counted."""
        self._check_allowed("asarray()")
        if isinstance(x, StrictArray):
            data = self._unwrap(x)
            return x if dtype is None or data.dtype == dtype else x.astype(dtype)
        self.to_device += 1
        return StrictArray(numpy.array(x, dtype=dtype, copy=True), self)

    def array(self, x: Any, dtype: Any = None, copy: bool = True) -> StrictArray:
        self._check_allowed("array()")
        if isinstance(x, StrictArray):
            return StrictArray(numpy.array(self._unwrap(x), dtype=dtype, copy=copy), self)
        return self.asarray(x, dtype=dtype)

    def ascontiguousarray(self, x: StrictArray, dtype: Any = None) -> StrictArray:
        self._check_allowed("ascontiguousarray()")
        return StrictArray(numpy.ascontiguousarray(self._unwrap(x), dtype=dtype), self)

    def empty(self, shape: Any, dtype: Any = float) -> StrictArray:
        self._check_allowed("empty()")
        return StrictArray(numpy.empty(shape, dtype=dtype), self)

    def zeros(self, shape: Any, dtype: Any = float) -> StrictArray:
        self._check_allowed("zeros()")
        return StrictArray(numpy.zeros(shape, dtype=dtype), self)

    def ones(self, shape: Any, dtype: Any = float) -> StrictArray:
        self._check_allowed("ones()")
        return StrictArray(numpy.ones(shape, dtype=dtype), self)

    def full(self, shape: Any, fill_value: Any, dtype: Any = None) -> StrictArray:
        self._check_allowed("full()")
        return StrictArray(numpy.full(shape, self._unwrap(fill_value), dtype=dtype), self)

    def arange(self, *args: Any, dtype: Any = None) -> StrictArray:
        self._check_allowed("arange()")
        return StrictArray(numpy.arange(*args, dtype=dtype), self)

    def zeros_like(self, x: StrictArray, dtype: Any = None) -> StrictArray:
        self._check_allowed("zeros_like()")
        return StrictArray(numpy.zeros_like(self._unwrap(x), dtype=dtype), self)

    def empty_like(self, x: StrictArray, dtype: Any = None) -> StrictArray:
        self._check_allowed("empty_like()")
        return StrictArray(numpy.empty_like(self._unwrap(x), dtype=dtype), self)

    def ones_like(self, x: StrictArray, dtype: Any = None) -> StrictArray:
        self._check_allowed("ones_like()")
        return StrictArray(numpy.ones_like(self._unwrap(x), dtype=dtype), self)

    # Functions with array arguments in fixed positions.
    def matmul(self, a: StrictArray, b: StrictArray, out: StrictArray | None = None) -> Any:
        result = numpy.matmul(self._unwrap(a), self._unwrap(b), out=self._out(out))
        return out if out is not None else self._wrap(result)

    def where(self, condition: Any, x: Any, y: Any) -> StrictArray:
        return self._wrap(numpy.where(self._unwrap(condition), self._unwrap(x), self._unwrap(y)))

    def clip(self, x: Any, a_min: Any, a_max: Any, out: Any = None) -> Any:
        result = numpy.clip(
            self._unwrap(x), self._unwrap(a_min), self._unwrap(a_max), out=self._out(out)
        )
        return out if out is not None else self._wrap(result)

    def take_along_axis(self, a: StrictArray, indices: StrictArray, axis: int) -> StrictArray:
        return self._wrap(numpy.take_along_axis(self._unwrap(a), self._unwrap(indices), axis))

    def reshape(self, x: StrictArray, shape: Any) -> StrictArray:
        return self._wrap(numpy.reshape(self._unwrap(x), shape))

    def transpose(self, x: StrictArray, axes: Any = None) -> StrictArray:
        return self._wrap(numpy.transpose(self._unwrap(x), axes))

    def concatenate(self, arrays: Any, axis: int = 0) -> StrictArray:
        return self._wrap(numpy.concatenate([self._unwrap(a) for a in arrays], axis=axis))

    def stack(self, arrays: Any, axis: int = 0) -> StrictArray:
        return self._wrap(numpy.stack([self._unwrap(a) for a in arrays], axis=axis))

    def result_type(self, *args: Any) -> numpy.dtype:
        return numpy.result_type(*(a.dtype if isinstance(a, StrictArray) else a for a in args))


def _ufunc(func: Any) -> Callable[..., Any]:
    def function(self: StrictNamespace, *args: Any, out: Any = None, **kwargs: Any) -> Any:
        result = func(*(self._unwrap(a) for a in args), out=self._out(out), **kwargs)
        return out if out is not None else self._wrap(result)

    function.__name__ = func.__name__
    function.__doc__ = f"``numpy.{func.__name__}`` on device arrays (``out=`` must be one)."
    return function


def _reduction(func: Callable[..., Any]) -> Callable[..., Any]:
    def function(self: StrictNamespace, x: Any, *args: Any, **kwargs: Any) -> Any:
        # Keyword arguments are axis/keepdims/dtype only: no array can hide in them.
        return self._wrap(func(self._unwrap(x), *args, **kwargs))

    function.__name__ = func.__name__
    function.__doc__ = f"``numpy.{func.__name__}`` of a device array, as a device array."
    return function


_UFUNCS = (
    "abs absolute add divide equal exp expm1 floor greater greater_equal isfinite isinf isnan "
    "less less_equal log log1p maximum minimum multiply negative not_equal power sign sqrt "
    "square subtract tanh true_divide logical_and logical_or logical_not"
)
for _name in _UFUNCS.split():
    setattr(StrictNamespace, _name, _ufunc(getattr(numpy, _name)))
for _name in ("sum", "mean", "max", "min", "argmax", "argmin", "all", "any", "prod"):
    setattr(StrictNamespace, _name, _reduction(getattr(numpy, _name)))


def make_strict_namespace(device: str = "strict:0") -> StrictNamespace:
    """Return a new strict array namespace (with its own counters) for the named device."""
    return StrictNamespace(device)


def unwrap_strict(x: StrictArray) -> numpy.ndarray:
    """The NumPy buffer behind a device array, *not* a transfer and not counted.

    For code that implements device-side functions (a namespace function, a fake kernel);
    model code must never call it: :func:`strict_to_numpy` is the transfer.
    """
    if not isinstance(x, StrictArray):
        raise TypeError(f"expected a StrictArray, got {type(x).__name__}")
    return x._data


def strict_to_numpy(x: StrictArray) -> numpy.ndarray:
    """Copy a device array to a new host ``numpy.ndarray`` (an explicit, counted transfer)."""
    data = unwrap_strict(x)
    x._ns._check_allowed("a copy to the host")
    x._ns.to_host += 1
    return data.copy()


class StrictBackend(Backend):
    """The base backend on a strict device namespace: every reference op, device-only.

    Parameters
    ----------
    xp : StrictNamespace, optional
        The namespace to use; a new one on ``"strict:0"`` by default (fresh counters).
    """

    name = "strict"

    def __init__(self, xp: Any = None) -> None:
        super().__init__(xp if xp is not None else make_strict_namespace())

    def to_numpy(self, x: Array) -> numpy.ndarray:
        """Return a host ``numpy.ndarray`` with the values of the backend array ``x``."""
        if isinstance(x, numpy.ndarray):  # already on the host, as cupy.asnumpy allows
            return x
        return strict_to_numpy(x)

    def info(self) -> dict[str, str]:
        """Facts about this backend for ``nnback info`` (array module, threads, device)."""
        return {**super().info(), "device": f"{self.xp.device} (pretend, host memory)"}
