"""Every backend keeps the base class's interface: same method signatures, nothing added.

Layers call ops through whatever backend they hold, so a backend whose override takes other
arguments, or one that grows a public method layers start to rely on, breaks the promise
that any backend runs any model. Checked on every registered backend that loads here (not
only the selected ones) and on the strict stand-in.
"""

from __future__ import annotations

import inspect

import pytest

from nnback.backends import backend_status, get_backend, registered_backends
from nnback.backends.base import Backend
from nnback.testing import StrictBackend

# Public methods a backend may add beyond Backend's, each with the reason it is needed.
# Must stay empty unless a reason is written here and the lead agrees.
ALLOWED_EXTRA_METHODS: dict[str, set[str]] = {}


def _public_methods(cls: type) -> dict[str, object]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and callable(member) and not isinstance(member, type)
    }


def _backend_classes() -> list[object]:
    params: list[object] = [pytest.param(StrictBackend, id="strict")]
    for name, reason in backend_status().items():
        if reason is None:
            params.append(pytest.param(type(get_backend(name)), id=name))
        else:
            params.append(pytest.param(None, id=name, marks=pytest.mark.skip(reason=reason)))
    return params


@pytest.mark.parametrize("cls", _backend_classes())
def test_same_signatures(cls: type) -> None:
    assert issubclass(cls, Backend)
    base = _public_methods(Backend)
    mine = _public_methods(cls)
    differing = []
    for name, method in base.items():
        want, got = inspect.signature(method), inspect.signature(mine[name])
        if want != got:
            differing.append(f"  {name}{got}\n    base: {name}{want}")
    assert not differing, f"{cls.__name__} changes signatures:\n" + "\n".join(differing)


@pytest.mark.parametrize("cls", _backend_classes())
def test_no_extra_public_methods(cls: type) -> None:
    extra = set(_public_methods(cls)) - set(_public_methods(Backend))
    extra -= ALLOWED_EXTRA_METHODS.get(cls.__name__, set())
    assert not extra, (
        f"{cls.__name__} adds public methods {sorted(extra)}: make them private (_name) "
        "or add them to Backend so every backend has them"
    )


@pytest.mark.parametrize("cls", _backend_classes())
def test_name_and_array_module(cls: type) -> None:
    instance = StrictBackend() if cls is StrictBackend else get_backend(cls.name)
    assert isinstance(cls.name, str) and cls.name
    assert cls.name in (*registered_backends(), "strict")
    assert instance.xp is not None and hasattr(instance.xp, "ndarray")


def test_allow_list_is_justified() -> None:
    # An entry needs a reason in the comment above ALLOWED_EXTRA_METHODS; none has one yet.
    assert ALLOWED_EXTRA_METHODS == {}


def test_signature_check_catches_a_changed_override() -> None:
    # The check itself must work: an override with another default is reported.
    class Drifted(Backend):
        def softmax(self, z: object, axis: int = 1) -> object:  # type: ignore[override]
            return super().softmax(z)

    assert inspect.signature(Drifted.softmax) != inspect.signature(Backend.softmax)
    with pytest.raises(AssertionError, match="softmax"):
        test_same_signatures(Drifted)
