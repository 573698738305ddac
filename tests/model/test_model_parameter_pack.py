"""Flat parameter buffers: the one-call optimizer step equals the per-parameter one exactly.

Each test trains two models built alike, one stepping over the flat buffers and one with
the pack switched off (the per-parameter loop, the definition), and wants equal weights
and optimizer state, bit for bit, on every backend.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

import numpy
import pytest
from model_helpers import classification_data, classifier

import nnback as nb
from nnback.errors import InputError
from nnback.parameter_pack import ParameterPack

OPTIMIZERS = {
    "sgd": lambda: nb.SGD(learning_rate=0.3),
    "sgd-momentum": lambda: nb.SGD(learning_rate=0.1, momentum=0.9, decay=1e-3),
    "adagrad": lambda: nb.AdaGrad(learning_rate=0.1),
    "rmsprop": lambda: nb.RMSprop(learning_rate=0.01),
    "adam": lambda: nb.Adam(learning_rate=0.01),
}


def _model(backend: Any, optimizer: str = "adam", **dense: Any) -> nb.Sequential:
    return classifier(optimizer=OPTIMIZERS[optimizer](), backend=backend, **dense).build()


def _unpacked(backend: Any, optimizer: str = "adam", **dense: Any) -> nb.Sequential:
    model = _model(backend, optimizer, **dense)
    for layer in model.trainable_layers:
        layer.parameter_pack = None
    return model


def _state(model: nb.Sequential) -> list[numpy.ndarray]:
    backend = model.backend
    found = [backend.to_numpy(a) for a in model.get_weights()]
    for layer in model.trainable_layers:
        for name in sorted(layer.optimizer_state):
            for slot in sorted(layer.optimizer_state[name]):
                found.append(backend.to_numpy(layer.optimizer_state[name][slot]))
    return found


def _assert_same(a: nb.Sequential, b: nb.Sequential) -> None:
    left, right = _state(a), _state(b)
    assert len(left) == len(right)
    for x, y in zip(left, right, strict=True):
        numpy.testing.assert_array_equal(x, y)


def _fit(model: nb.Sequential, epochs: int = 2) -> None:
    X, y = classification_data(n=40)
    model.fit(X, y, epochs=epochs, batch_size=16, verbose=0)


def test_build_lays_the_parameters_out_in_one_buffer(backend: Any) -> None:
    model = _model(backend)
    pack = model.trainable_layers[0].parameter_pack
    assert isinstance(pack, ParameterPack)
    assert all(layer.parameter_pack is pack for layer in model.trainable_layers)
    assert pack.param.shape == (3 * 8 + 8 + 8 * 3 + 3,)
    # Every parameter is a view: writing the buffer shows through the layers.
    pack.param[...] = 0
    assert all(not numpy.any(w) for w in model.get_weights())


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_flat_step_equals_the_per_parameter_step(backend: Any, optimizer: str) -> None:
    packed, plain = _model(backend, optimizer), _unpacked(backend, optimizer)
    _fit(packed)
    _fit(plain)
    assert packed.optimizer._flat_state is not None  # the flat path ran
    assert plain.optimizer._flat_state is None
    _assert_same(packed, plain)


def test_regularized_groups_and_changed_regularization(backend: Any) -> None:
    settings = dict(weight_regularizer_l2=1e-2, bias_regularizer_l1=1e-3)
    packed, plain = _model(backend, **settings), _unpacked(backend, **settings)
    _fit(packed, 1)
    _fit(plain, 1)
    runs = packed.trainable_layers[0].parameter_pack.runs(packed.trainable_layers)
    assert [(r.l1, r.l2) for r in runs] == [(0.0, 1e-2), (1e-3, 0.0)]
    for model in (packed, plain):  # changed after the layout was chosen
        model.trainable_layers[1].weight_regularizer_l1 = 5e-3
    _fit(packed, 1)
    _fit(plain, 1)
    _assert_same(packed, plain)


def test_a_parameter_assigned_by_the_user_is_updated_in_place(backend: Any) -> None:
    packed, plain = _model(backend), _unpacked(backend)
    for model in (packed, plain):
        mine = backend.copy(model.trainable_layers[0].weights)
        model.trainable_layers[0].weights = mine
        _fit(model)
        # The user's own array is the one trained, as without a pack.
        assert model.trainable_layers[0].weights is mine
    _assert_same(packed, plain)


def test_replaced_optimizer_state_is_copied_back_into_the_buffers(backend: Any) -> None:
    packed, plain = _model(backend), _unpacked(backend)
    for model in (packed, plain):
        _fit(model, 1)
        layer = model.trainable_layers[1]
        layer.optimizer_state = {
            name: {slot: backend.copy(a) * 0.5 for slot, a in slots.items()}
            for name, slots in layer.optimizer_state.items()
        }
        _fit(model, 1)
    _assert_same(packed, plain)


def test_a_step_before_any_backward_still_says_so(backend: Any) -> None:
    model = _model(backend)
    with pytest.raises(InputError, match="no gradient"):
        model.optimizer.step(model.trainable_layers)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_model_trains_apart_from_the_original(how: str) -> None:
    original, twin = _model("numpy"), _model("numpy")
    _fit(original, 1)
    _fit(twin, 1)
    copied = copy.deepcopy(original) if how == "deepcopy" else pickle.loads(pickle.dumps(original))
    before = _state(original)
    _fit(copied, 1)
    for x, y in zip(_state(original), before, strict=True):
        numpy.testing.assert_array_equal(x, y)  # the original is untouched
    _fit(twin, 1)
    _assert_same(copied, twin)  # and the copy trained as the original would have


def test_moving_to_another_backend_packs_again() -> None:
    model, plain = _model("numpy"), _unpacked("numpy")
    _fit(model, 1)
    _fit(plain, 1)
    pack = model.trainable_layers[0].parameter_pack
    model.to_backend("numpy")
    assert model.trainable_layers[0].parameter_pack is not pack
    _fit(model, 1)
    _fit(plain, 1)
    _assert_same(model, plain)
