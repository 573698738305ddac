"""What a user reads when a backend name is wrong or cannot load (issue 12, first hour).

The unavailable-backend error gave its reason twice and listed the backend under
"available" while calling it unavailable; a missing driver was reported as "driver version
is insufficient"; a missing numba had no install hint; and ``Sequential(backend="torch")``
built without error although the README says an unknown name fails at once.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest

import nnback as nb
from nnback import backends as registry
from nnback.backends.base import Backend
from nnback.errors import BackendUnavailableError, UnknownBackendError

NO_DRIVER = (
    "no NVIDIA GPU/driver found: cudaErrorInsufficientDriver: CUDA driver version is "
    "insufficient for CUDA runtime version"
)


class _NoDriver(Backend):
    name = "gpu"

    def __init__(self) -> None:
        raise BackendUnavailableError(NO_DRIVER)


@pytest.fixture(autouse=True)
def registry_with_broken_backends(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    for attribute in ("_REGISTRY", "_instances", "_failures"):
        monkeypatch.setattr(registry, attribute, dict(getattr(registry, attribute)))
    monkeypatch.setattr(registry, "_global_choice", None)
    module = types.ModuleType("nnback_test_no_driver")
    module.NoDriver = _NoDriver  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    registry._REGISTRY["gpu"] = f"{module.__name__}:NoDriver"
    yield


def test_the_unavailable_error_gives_its_reason_once_and_lists_only_loadable_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry, "_nvidia_driver_present", lambda: True)
    with pytest.raises(BackendUnavailableError) as raised:
        nb.get_backend("gpu")
    message = str(raised.value)
    assert message.startswith(f"backend 'gpu' cannot load: {NO_DRIVER}; available: numpy")
    assert message.count("insufficient") == 1, message
    available = message.split("; available: ")[1]
    assert "gpu" not in available.split("; unavailable here:")[0], message
    assert "\n" not in message


def test_a_missing_driver_is_not_called_insufficient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_nvidia_driver_present", lambda: False)
    with pytest.raises(BackendUnavailableError) as raised:
        nb.get_backend("gpu")
    message = str(raised.value)
    assert "insufficient" not in message
    assert message.startswith("backend 'gpu' cannot load: no NVIDIA driver is installed")
    assert "no NVIDIA driver is installed" in (nb.backend_status()["gpu"] or "")


def test_a_missing_numba_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("nnback_test_needs_numba")

    class NeedsNumba(Backend):
        def __init__(self) -> None:
            raise ModuleNotFoundError("No module named 'numba'", name="numba")

    module.NeedsNumba = NeedsNumba  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    registry._REGISTRY["fast"] = f"{module.__name__}:NeedsNumba"
    with pytest.raises(BackendUnavailableError) as raised:
        nb.get_backend("fast")
    assert "No module named 'numba'; install it with pip install 'nnback[numba]'" in str(
        raised.value
    )


def test_an_unknown_name_lists_the_unavailable_ones_with_their_reason_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry, "_nvidia_driver_present", lambda: True)
    with pytest.raises(UnknownBackendError) as raised:
        nb.get_backend("torch")
    message = str(raised.value)
    assert message.startswith("unknown backend 'torch'; available: numpy")
    assert "; unavailable here: " in message and f"gpu ({NO_DRIVER})" in message
    assert message.count("insufficient") == 1


@pytest.mark.parametrize(
    ("name", "error"), [("torch", UnknownBackendError), ("gpu", BackendUnavailableError)]
)
def test_sequential_checks_the_backend_name_at_once(name: str, error: type[Exception]) -> None:
    with pytest.raises(error, match=repr(name)):
        nb.Sequential([nb.Dense(2, 2)], backend=name)


def test_sequential_accepts_a_known_name_and_auto() -> None:
    assert nb.Sequential([nb.Dense(2, 2)], backend="numpy").build().backend.name == "numpy"
    nb.Sequential([nb.Dense(2, 2)], backend="auto")
