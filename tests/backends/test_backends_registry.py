"""The registry and the selection rules: explicit > use_backend > set_backend > env > numpy."""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Iterator

import pytest

import nnback
from nnback import backends as registry
from nnback.backends.base import Backend
from nnback.backends.numpy_backend import NumpyBackend
from nnback.errors import BackendUnavailableError, UnknownBackendError


class _Ghost(Backend):
    name = "ghost"

    def __init__(self) -> None:
        raise BackendUnavailableError("ghost needs a flux capacitor (none found)")


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Give each test its own registry state and no backend environment variable."""
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    for attribute in ("_REGISTRY", "_instances", "_failures"):
        monkeypatch.setattr(registry, attribute, dict(getattr(registry, attribute)))
    monkeypatch.setattr(registry, "_global_choice", None)
    ghost = types.ModuleType("nnback_test_ghost_backend")
    ghost.Ghost = _Ghost  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, ghost.__name__, ghost)
    # Registered under absolute module names: import_module ignores the package for them.
    registry._REGISTRY["ghost"] = f"{ghost.__name__}:Ghost"
    registry._REGISTRY["missing"] = "nnback_test_no_such_module_xyz:Missing"
    registry._REGISTRY["strict"] = "nnback.testing.strict:StrictBackend"
    yield


def test_default_is_numpy() -> None:
    assert nnback.get_backend().name == "numpy"


def test_unknown_name_lists_the_backends() -> None:
    with pytest.raises(UnknownBackendError) as info:
        nnback.get_backend("tensorflow")
    message = str(info.value)
    assert "'tensorflow'" in message
    for name in registry.registered_backends():
        assert name in message
    assert "auto" in message


def test_unavailable_backend_says_why() -> None:
    with pytest.raises(BackendUnavailableError, match="flux capacitor"):
        nnback.get_backend("ghost")
    with pytest.raises(BackendUnavailableError, match="nnback_test_no_such_module_xyz"):
        nnback.get_backend("missing")
    status = nnback.backend_status()
    assert "flux capacitor" in status["ghost"]
    assert status["numpy"] is None
    assert "ghost" not in nnback.available_backends()
    with pytest.raises(BackendUnavailableError, match="flux capacitor"):
        nnback.set_backend("ghost")


def test_environment_is_read_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    # nnback is long imported; the variable set now must still count.
    assert nnback.get_backend().name == "numpy"
    monkeypatch.setenv(registry.ENV_VAR, "strict")
    assert nnback.get_backend().name == "strict"
    monkeypatch.setenv(registry.ENV_VAR, " NumPy ")
    assert nnback.get_backend().name == "numpy"


@pytest.mark.parametrize("value, error", [("nope", UnknownBackendError), ("ghost", RuntimeError)])
def test_bad_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, error: type[Exception]
) -> None:
    monkeypatch.setenv(registry.ENV_VAR, value)
    with pytest.raises(error, match=registry.ENV_VAR):
        nnback.get_backend()


def test_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, context, chosen = NumpyBackend(), NumpyBackend(), NumpyBackend()
    monkeypatch.setenv(registry.ENV_VAR, "strict")
    assert nnback.get_backend().name == "strict"  # env > default
    assert nnback.set_backend(chosen) is chosen
    assert nnback.get_backend() is chosen  # set_backend > env
    with nnback.use_backend(context) as active:
        assert active is context
        assert nnback.get_backend() is context  # use_backend > set_backend
        assert nnback.get_backend(explicit) is explicit  # explicit > everything
        assert nnback.get_backend("strict").name == "strict"
    assert nnback.get_backend() is chosen
    nnback.set_backend(None)
    assert nnback.get_backend().name == "strict"  # back to the environment


def test_use_backend_nests_and_is_restored_after_an_exception() -> None:
    outer, inner = NumpyBackend(), NumpyBackend()
    with nnback.use_backend(outer):
        with pytest.raises(RuntimeError, match="boom"):
            with nnback.use_backend(inner):
                assert nnback.get_backend() is inner
                raise RuntimeError("boom")
        assert nnback.get_backend() is outer
    assert nnback.get_backend().name == "numpy"
    assert registry._context_choice.get() is None


def test_use_backend_is_local_to_the_thread() -> None:
    mine = NumpyBackend()
    seen: list[Backend] = []
    with nnback.use_backend(mine):
        thread = threading.Thread(target=lambda: seen.append(nnback.get_backend()))
        thread.start()
        thread.join()
    assert seen and seen[0] is not mine


def test_use_backend_refuses_bad_names_before_entering() -> None:
    with pytest.raises(UnknownBackendError):
        with nnback.use_backend("nope"):
            pytest.fail("entered the block")
    with pytest.raises(UnknownBackendError, match="Backend instance"):
        nnback.get_backend(42)  # type: ignore[arg-type]


def test_auto_picks_the_fastest_available() -> None:
    available = nnback.available_backends()
    fastest = next(name for name in registry._AUTO_ORDER if name in available)
    assert nnback.get_backend("auto").name == fastest
    assert nnback.get_backend(" AUTO ").name == fastest


def test_backends_load_once() -> None:
    assert nnback.get_backend("strict") is nnback.get_backend("strict")
    assert "strict" in nnback.available_backends()


class _Broken:
    name = "broken"

    def __init__(self) -> None:
        raise RuntimeError("driver reported an internal error")


def test_a_backend_that_crashes_while_loading_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = types.ModuleType("nnback_test_broken_backend")
    broken.Broken = _Broken  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, broken.__name__, broken)
    registry._REGISTRY["broken"] = f"{broken.__name__}:Broken"
    with pytest.raises(BackendUnavailableError, match="RuntimeError: driver reported"):
        nnback.get_backend("broken")
    # The failure is remembered and reported, not raised, by the status listing.
    assert "driver reported" in (registry.backend_status()["broken"] or "")
