"""Which backends the tests (and the benchmarks) run on.

The selection lives here, not in a ``conftest.py``, so that ``tests/`` and ``bench/`` share
it: every backend that loads here plus the strict device stand-in, narrowed by the
``NNBACK_TEST_BACKENDS`` environment variable (a comma-separated list of names). A name
asked for that cannot load stays in the selection with its reason, so the test run shows
it as skipped, and why, instead of silently testing less.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..backends import backend_status, get_backend, registered_backends
from ..backends.base import Backend
from ..errors import UnknownBackendError

__all__ = [
    "STRICT",
    "TEST_BACKENDS_ENV_VAR",
    "BackendCandidate",
    "backend_params",
    "gpu_unavailable_reason",
    "selected_backends",
    "unselected_backends",
]

TEST_BACKENDS_ENV_VAR = "NNBACK_TEST_BACKENDS"

STRICT = "strict"
"""The name of :class:`~nnback.testing.strict.StrictBackend` in a selection (not registered:
it is a test device, not something a user picks)."""


@dataclass(frozen=True)
class BackendCandidate:
    """A backend a test may run on.

    Attributes
    ----------
    name : str
        Registry name, or ``"strict"``.
    reason : str or None
        ``None`` when it loads here, else why not (from :func:`nnback.backend_status`).
    """

    name: str
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.reason is None

    def load(self) -> Backend:
        """Return the backend: the registry's shared instance, or a fresh StrictBackend.

        A fresh StrictBackend per call gives each test its own transfer counters.
        """
        if self.reason is not None:
            raise RuntimeError(f"backend {self.name!r} is not available: {self.reason}")
        if self.name == STRICT:
            from .strict import StrictBackend

            return StrictBackend()
        return get_backend(self.name)


def _requested(environ: Mapping[str, str]) -> list[str] | None:
    """The names in the environment variable, or None when it is unset or empty."""
    raw = environ.get(TEST_BACKENDS_ENV_VAR, "")
    names = [part.strip().lower() for part in raw.split(",") if part.strip()]
    return list(dict.fromkeys(names)) or None


def selected_backends(
    *, include_strict: bool = True, environ: Mapping[str, str] | None = None
) -> list[BackendCandidate]:
    """The backends to run on.

    Parameters
    ----------
    include_strict : bool
        Whether the strict device stand-in is part of the default selection (benchmarks
        leave it out: it measures nothing real).
    environ : mapping, optional
        Where to read ``NNBACK_TEST_BACKENDS``; ``os.environ`` by default.

    Returns
    -------
    list of BackendCandidate
        Without the variable: every registered backend that loads (registry order), then
        ``"strict"``. With it: exactly the names listed, in that order, each with the reason
        it cannot load if it cannot.

    Raises
    ------
    UnknownBackendError
        If the variable names a backend that is not registered (a typo must not silently
        test nothing).
    """
    status = backend_status()
    known = [*status, STRICT]
    requested = _requested(os.environ if environ is None else environ)
    if requested is None:
        names = [name for name, reason in status.items() if reason is None]
        return [BackendCandidate(n) for n in names] + (
            [BackendCandidate(STRICT)] if include_strict else []
        )
    unknown = [name for name in requested if name not in known]
    if unknown:
        raise UnknownBackendError(
            f"{TEST_BACKENDS_ENV_VAR} names unknown backend(s) {', '.join(unknown)}; "
            f"known: {', '.join(known)}"
        )
    return [BackendCandidate(n, None if n == STRICT else status[n]) for n in requested]


def unselected_backends(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Registered backends a default selection leaves out, each with the reason.

    For the test report's header: what was *not* tested on this machine, and why.
    """
    if _requested(os.environ if environ is None else environ) is not None:
        return {}
    return {name: reason for name, reason in backend_status().items() if reason is not None}


def gpu_unavailable_reason() -> str | None:
    """``None`` when the CuPy backend loads (a usable GPU), else why ``gpu`` tests skip."""
    if importlib.util.find_spec("cupy") is None:
        return "cupy is not installed (pip install 'nnback[gpu]' on a machine with a GPU)"
    if "cupy" not in registered_backends():
        return "no 'cupy' backend is registered"
    return backend_status()["cupy"]


def backend_params(
    *, include_strict: bool = True, environ: Mapping[str, str] | None = None
) -> list[Any]:
    """:func:`selected_backends` as ``pytest.param`` objects, id'd by name, skipping with reasons.

    For ``@pytest.fixture(params=backend_params())``; the fixture then returns
    ``request.param.load()``. Imports pytest only when called.
    """
    import pytest

    params = []
    for candidate in selected_backends(include_strict=include_strict, environ=environ):
        marks = [] if candidate.available else [pytest.mark.skip(reason=candidate.reason)]
        params.append(pytest.param(candidate, id=candidate.name, marks=marks))
    return params
