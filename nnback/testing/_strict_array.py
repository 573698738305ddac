"""The device array of the strict namespace (see :mod:`nnback.testing.strict`).

Kept apart from the namespace only to keep each file short; import it from
:mod:`nnback.testing.strict`. The array holds a reference to its namespace, which decides
what may cross into NumPy calls (``_unwrap``) and wraps results (``_wrap``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy

if TYPE_CHECKING:
    from .strict import StrictNamespace

SCALAR_TYPES = (bool, int, float, complex, numpy.generic)


def mixing_error(value: Any, device: str) -> TypeError:
    """The error for host data met where a device array (or a scalar) must be."""
    if isinstance(value, numpy.ndarray):
        kind = "host numpy array"
    else:
        kind = f"host object of type {type(value).__name__}"
    return TypeError(
        f"mixing {kind} with device array on {device!r}: move it explicitly with "
        "backend.asarray() (host data never moves to a device implicitly)"
    )


class _Pointer(NamedTuple):
    ptr: int


class _Flags(NamedTuple):
    """Layout flags, as metadata (reading them needs no synchronisation on CuPy either)."""

    c_contiguous: bool
    f_contiguous: bool
    writeable: bool


class StrictArray:
    """An array on a strict pretend device: a NumPy buffer the host may not read implicitly.

    Not constructed directly: use the namespace's ``asarray``, ``zeros``, ... functions.
    """

    __slots__ = ("_data", "_ns")
    # Makes NumPy's own operators and ufuncs refuse us (``ndarray + x`` hands over to our
    # reflected operator, which then raises the mixing error).
    __array_ufunc__ = None
    __hash__ = None  # type: ignore[assignment]  # == is element-wise

    def __init__(self, data: numpy.ndarray, namespace: StrictNamespace) -> None:
        self._data = data
        self._ns = namespace

    # Metadata: free on a device too.
    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def size(self) -> int:
        return self._data.size

    @property
    def dtype(self) -> numpy.dtype:
        return self._data.dtype

    @property
    def strides(self) -> tuple[int, ...]:
        return self._data.strides

    @property
    def itemsize(self) -> int:
        return self._data.itemsize

    @property
    def nbytes(self) -> int:
        return self._data.nbytes

    @property
    def flags(self) -> _Flags:
        f = self._data.flags
        return _Flags(f.c_contiguous, f.f_contiguous, f.writeable)

    @property
    def device(self) -> str:
        return self._ns.device

    @property
    def data(self) -> _Pointer:
        """``cupy.ndarray.data``: ``.ptr`` is the address of the first element (for the fake
        device's cuBLAS, which reads memory by address as the real one does)."""
        note = getattr(self._ns, "_note_address", None)
        if note is not None:
            note(self._data)
        return _Pointer(self._data.__array_interface__["data"][0])

    @property
    def T(self) -> StrictArray:  # noqa: N802 (NumPy's name)
        return StrictArray(self._data.T, self._ns)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        # No values: reading them would be a transfer, and pytest calls repr on failures.
        return f"StrictArray(shape={self.shape}, dtype={self.dtype}, device={self.device!r})"

    __str__ = __repr__

    # Refused implicit conversions. Each says what to do instead.
    def __array__(self, dtype: Any = None, copy: Any = None) -> numpy.ndarray:
        raise TypeError(
            f"implicit conversion of a device array on {self.device!r} to a NumPy array is "
            "refused; use backend.to_numpy(x) (an explicit, counted transfer)"
        )

    @property
    def __array_interface__(self) -> dict[str, Any]:
        self.__array__()
        raise AssertionError("unreachable")

    __array_struct__ = __array_interface__

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        raise TypeError(
            f"numpy.{func.__name__} called on a device array on {self.device!r}; call it "
            "through the backend's array module (backend.xp) instead"
        )

    def __iter__(self) -> Any:
        raise TypeError("iterating over a device array reads it element by element on the host")

    def __contains__(self, value: Any) -> bool:
        raise TypeError("'in' on a device array is a hidden host synchronisation")

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("pickling a device array copies it to the host; use backend.to_numpy")

    def __copy__(self) -> StrictArray:
        return StrictArray(self._data.copy(), self._ns)

    def __deepcopy__(self, memo: Any) -> StrictArray:
        return self.__copy__()

    # Allowed on 0-d arrays as explicit synchronisations, counted.
    def _sync_scalar(self, what: str) -> Any:
        if self.ndim != 0:
            raise TypeError(
                f"{what} of a device array of shape {self.shape}: only 0-d arrays convert to "
                "Python scalars (reduce first, then convert once)"
            )
        self._ns._check_allowed(f"{what} of a device value")
        self._ns.host_syncs += 1
        return self._data.item()

    def __bool__(self) -> bool:
        return bool(self._sync_scalar("bool()"))

    def __float__(self) -> float:
        return float(self._sync_scalar("float()"))

    def __int__(self) -> int:
        return int(self._sync_scalar("int()"))

    def __complex__(self) -> complex:
        return complex(self._sync_scalar("complex()"))

    def __index__(self) -> int:
        if self.dtype.kind not in "iub":
            raise TypeError(f"a {self.dtype} device array cannot be used as an index")
        return operator.index(self._sync_scalar("__index__"))

    def __format__(self, spec: str) -> str:
        if not spec:
            return repr(self)
        return format(self._sync_scalar("format()"), spec)

    def item(self) -> Any:
        """The value of a 0-d array as a Python scalar (an explicit, counted sync)."""
        return self._sync_scalar("item()")

    # Indexing: keys may hold device arrays (same device), ints, slices, None, Ellipsis.
    def _key(self, key: Any) -> Any:
        if isinstance(key, tuple):
            return tuple(self._key(part) for part in key)
        if isinstance(key, StrictArray):
            return self._ns._unwrap(key)
        if isinstance(key, numpy.ndarray | list):
            raise mixing_error(key, self.device)
        return key

    def __getitem__(self, key: Any) -> StrictArray:
        return self._ns._wrap(self._data[self._key(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._data[self._key(key)] = self._ns._unwrap(value)

    # Methods, as far as model code uses them (all stay on the device).
    def reshape(self, *shape: Any, order: str = "C") -> StrictArray:
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = tuple(shape[0])
        return StrictArray(self._data.reshape(shape, order=order), self._ns)

    def astype(self, dtype: Any, copy: bool = True) -> StrictArray:
        return StrictArray(self._data.astype(dtype, copy=copy), self._ns)

    def copy(self) -> StrictArray:
        return self.__copy__()

    def ravel(self) -> StrictArray:
        return StrictArray(self._data.ravel(), self._ns)

    def transpose(self, *axes: int) -> StrictArray:
        return StrictArray(self._data.transpose(*axes), self._ns)

    def fill(self, value: Any) -> None:
        self._data.fill(self._ns._unwrap(value))

    def sum(self, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> StrictArray:
        return self._ns.sum(self, axis=axis, dtype=dtype, keepdims=keepdims)

    def mean(self, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> StrictArray:
        return self._ns.mean(self, axis=axis, dtype=dtype, keepdims=keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> StrictArray:
        return self._ns.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> StrictArray:
        return self._ns.min(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis: Any = None) -> StrictArray:
        return self._ns.argmax(self, axis=axis)


def _binary(op: Callable[[Any, Any], Any], reflected: bool) -> Callable[..., Any]:
    def method(self: StrictArray, other: Any) -> Any:
        value = self._ns._unwrap(other)
        result = op(value, self._data) if reflected else op(self._data, value)
        return self._ns._wrap(result)

    return method


def _inplace(op: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    def method(self: StrictArray, other: Any) -> StrictArray:
        # numpy's in-place operators write into the buffer itself, so views stay views.
        self._data = op(self._data, self._ns._unwrap(other))
        return self

    return method


def _unary(op: Callable[[Any], Any]) -> Callable[..., Any]:
    def method(self: StrictArray) -> StrictArray:
        return self._ns._wrap(op(self._data))

    return method


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or"):
    _op = getattr(operator, _name + "_" if _name in ("and", "or") else _name)
    setattr(StrictArray, f"__{_name}__", _binary(_op, reflected=False))
    setattr(StrictArray, f"__r{_name}__", _binary(_op, reflected=True))
    setattr(StrictArray, f"__i{_name}__", _inplace(getattr(operator, f"i{_name}")))
for _name in ("lt", "le", "gt", "ge", "eq", "ne", "xor"):
    setattr(StrictArray, f"__{_name}__", _binary(getattr(operator, _name), reflected=False))
StrictArray.__rxor__ = _binary(operator.xor, reflected=True)  # type: ignore[attr-defined]
for _name in ("neg", "pos", "abs", "invert"):
    setattr(StrictArray, f"__{_name}__", _unary(getattr(operator, _name)))
