"""Backend registry and selection.

Adding a backend is one file in this package plus one line in ``_REGISTRY``. Backends are
imported lazily, the first time they are asked for, so importing nnback never imports
Numba or CuPy.

Selection, strongest first: an explicit argument, :func:`use_backend` (a ContextVar, so it
is local to a thread or task), :func:`set_backend`, the ``NNBACK_BACKEND`` environment
variable (read when a backend is first needed, not at import), then ``"numpy"``. The name
``"auto"`` picks the fastest backend that loads here.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import threading
from collections.abc import Iterator

from ..errors import BackendUnavailableError, UnknownBackendError
from .base import ACTIVATIONS, Backend

__all__ = [
    "ACTIVATIONS",
    "Backend",
    "available_backends",
    "backend_status",
    "get_backend",
    "registered_backends",
    "set_backend",
    "use_backend",
]

# name -> "module:Class", module relative to this package. One line per backend.
_REGISTRY: dict[str, str] = {
    "numpy": ".numpy_backend:NumpyBackend",
    "numba": ".numba_backend:NumbaBackend",
    "cupy": ".cupy_backend:CupyBackend",
}

# Fastest first: what "auto" tries.
_AUTO_ORDER = ("cupy", "numba", "numpy")

ENV_VAR = "NNBACK_BACKEND"

_instances: dict[str, Backend] = {}
_failures: dict[str, str] = {}
_lock = threading.Lock()
_global_choice: Backend | None = None
_context_choice: contextvars.ContextVar[Backend | None] = contextvars.ContextVar(
    "nnback_backend", default=None
)


# Packages a backend needs, with the command that installs them.
_INSTALL_HINTS = {
    "numba": "pip install 'nnback[numba]'",
    "llvmlite": "pip install 'nnback[numba]'",
    "cupy": "pip install 'nnback[gpu]'",
}


def _nvidia_driver_present() -> bool:
    """Whether the NVIDIA driver's CUDA library can be loaded (not whether it is recent)."""
    import ctypes

    for library in ("libcuda.so.1", "libcuda.so", "nvcuda.dll", "libcuda.dylib"):
        try:
            ctypes.CDLL(library)
        except OSError:
            continue
        return True
    return False


def _clarify(reason: str) -> str:
    """CUDA reports a missing driver as "driver version is insufficient": say what it is."""
    if "driver version is insufficient" in reason and not _nvidia_driver_present():
        return (
            "no NVIDIA driver is installed (libcuda cannot be loaded), so CUDA cannot run; "
            "use a machine with an NVIDIA GPU and its driver"
        )
    return reason


def registered_backends() -> list[str]:
    """Names of every registered backend, whether or not it loads here."""
    return list(_REGISTRY)


def _load(name: str) -> Backend:
    """Import and instantiate a registered backend once; remember why it failed if it did."""
    with _lock:
        if name in _instances:
            return _instances[name]
        if name in _failures:
            raise BackendUnavailableError(_failures[name])
        module_name, class_name = _REGISTRY[name].split(":")
        try:
            module = importlib.import_module(module_name, __name__)
            backend = getattr(module, class_name)()
        except BackendUnavailableError as exc:
            reason = _clarify(str(exc))
            _failures[name] = reason
            raise BackendUnavailableError(reason) from exc
        except ImportError as exc:
            reason = f"backend {name!r} cannot load: {exc}"
            missing = getattr(exc, "name", None)
            if missing in _INSTALL_HINTS:
                reason += f"; install it with {_INSTALL_HINTS[missing]}"
            _failures[name] = reason
            raise BackendUnavailableError(reason) from exc
        except Exception as exc:
            # Anything else a backend's import or set-up raises (a broken driver, an
            # unwritable cache) makes it unavailable too, so "auto" and "nnback info" go on.
            reason = f"backend {name!r} failed to load: {type(exc).__name__}: {exc}"
            _failures[name] = reason
            raise BackendUnavailableError(reason) from exc
        _instances[name] = backend
        return backend


def backend_status() -> dict[str, str | None]:
    """Map every registered backend name to ``None`` if it loads, else the reason it does not."""
    status: dict[str, str | None] = {}
    for name in _REGISTRY:
        try:
            _load(name)
            status[name] = None
        except BackendUnavailableError as exc:
            status[name] = str(exc)
    return status


def available_backends() -> list[str]:
    """Names of the backends that load on this machine, in registry order."""
    return [name for name, reason in backend_status().items() if reason is None]


def _describe_choices(asked: str | None = None) -> str:
    """``available: ...`` naming the backends that load, then the others with why not
    (except ``asked``, whose reason the message has already given)."""
    status = backend_status()
    usable = [name for name, reason in status.items() if reason is None]
    text = "available: " + ", ".join([*usable, "or 'auto'"])
    others = [
        f"{name} ({reason})"
        for name, reason in status.items()
        if reason is not None and name != asked
    ]
    if others:
        text += "; unavailable here: " + "; ".join(others)
    return text


def _resolve(choice: str | Backend) -> Backend:
    if isinstance(choice, Backend):
        return choice
    if not isinstance(choice, str):
        raise UnknownBackendError(
            f"a backend is named by a string or given as a Backend instance, "
            f"got {type(choice).__name__}"
        )
    name = choice.strip().lower()
    if name == "auto":
        for candidate in _AUTO_ORDER:
            try:
                return _load(candidate)
            except BackendUnavailableError:
                continue
    if name not in _REGISTRY:
        raise UnknownBackendError(f"unknown backend {choice!r}; {_describe_choices()}")
    try:
        return _load(name)
    except BackendUnavailableError as exc:
        reason = str(exc)
        if not reason.startswith(f"backend {name!r}"):
            reason = f"backend {name!r} cannot load: {reason}"
        raise BackendUnavailableError(f"{reason}; {_describe_choices(name)}") from None


def get_backend(name: str | Backend | None = None) -> Backend:
    """Return the backend to use now.

    Parameters
    ----------
    name : str or Backend, optional
        An explicit choice, which wins over every other setting.
    """
    if name is not None:
        return _resolve(name)
    chosen = _context_choice.get()
    if chosen is not None:
        return chosen
    if _global_choice is not None:
        return _global_choice
    from_env = os.environ.get(ENV_VAR, "").strip()
    if from_env:
        try:
            return _resolve(from_env)
        except (UnknownBackendError, BackendUnavailableError) as exc:
            raise type(exc)(f"{ENV_VAR}={from_env!r}: {exc}") from None
    return _resolve("numpy")


def set_backend(name: str | Backend | None) -> Backend | None:
    """Choose the process-wide default backend (``None`` goes back to the environment).

    Returns the backend now chosen. Raises at once if the name is unknown or cannot load.
    """
    global _global_choice
    _global_choice = None if name is None else _resolve(name)
    return _global_choice


@contextlib.contextmanager
def use_backend(name: str | Backend) -> Iterator[Backend]:
    """Use a backend inside a ``with`` block (local to the current thread or task)."""
    token = _context_choice.set(_resolve(name))
    try:
        yield _context_choice.get()  # type: ignore[misc]
    finally:
        _context_choice.reset(token)
