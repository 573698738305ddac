"""ModelCheckpoint path templates: checked against the logs fit will give, before training.

Issue 12, defect 8: ``ModelCheckpoint("ck_{val_loss:.2f}.npz")`` without validation data
raised a bare ``KeyError`` after the first epoch (and with validation data too, since only
``{epoch}`` was filled in).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from model_helpers import classification_data, classifier

import nnback as nb


def _fit(model: nb.Sequential, callback: nb.Callback, **kwargs: object) -> nb.History:
    X, y = classification_data(n=12)
    return model.fit(X, y, epochs=2, batch_size=4, callbacks=[callback], verbose=0, **kwargs)


def test_a_validation_field_without_validation_fails_before_training(tmp_path: Path) -> None:
    model = classifier(seed=1)
    model.build()
    before = model.get_weights()
    checkpoint = nb.ModelCheckpoint(tmp_path / "ck_{val_loss:.2f}.npz")
    with pytest.raises(nb.InputError) as raised:
        _fit(model, checkpoint)
    message = str(raised.value)
    assert "ModelCheckpoint(path): the template" in message
    assert "uses {val_loss}, which fit does not log (this fit has no validation data)" in message
    assert "pass validation_data=(X_val, y_val) or validation_split to fit" in message
    assert "{epoch}, {loss}" in message
    # Refused before any step: the weights are the initial ones, no file was written.
    for got, want in zip(model.get_weights(), before, strict=True):
        assert (got == want).all()
    assert model.optimizer.iterations == 0
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_field_names_what_is_logged(tmp_path: Path) -> None:
    with pytest.raises(nb.InputError, match=r"uses \{acc\}, which fit does not log; use only"):
        _fit(classifier(seed=1), nb.ModelCheckpoint(tmp_path / "m_{acc}.npz"))


def test_a_field_with_a_bad_format_fails_before_training(tmp_path: Path) -> None:
    with pytest.raises(nb.InputError, match="cannot be filled in"):
        _fit(classifier(seed=1), nb.ModelCheckpoint(tmp_path / "m_{loss:d}.npz"))


@pytest.mark.parametrize("path", ["m_{}.npz", "m_{0}.npz", "m_{epoch.npz", "m_}.npz"])
def test_malformed_templates_fail_at_construction(tmp_path: Path, path: str) -> None:
    with pytest.raises(nb.InputError, match=r"ModelCheckpoint\(path\)"):
        nb.ModelCheckpoint(tmp_path / path)


def test_validation_fields_are_filled_in(tmp_path: Path) -> None:
    model = classifier(seed=1)
    checkpoint = nb.ModelCheckpoint(tmp_path / "ck_{epoch:02d}_{val_loss:.2f}_{accuracy:.2f}.npz")
    history = _fit(model, checkpoint, validation_split=0.25)
    names = sorted(path.name for path in tmp_path.iterdir())
    expected = [
        f"ck_{e + 1:02d}_{history['val_loss'][e]:.2f}_{history['accuracy'][e]:.2f}.npz"
        for e in range(2)
    ]
    assert names == sorted(expected)
    nb.load_model(tmp_path / expected[-1])


@pytest.mark.parametrize("validating", [False, True])
def test_logged_keys_are_the_keys_fit_logs(validating: bool) -> None:
    from nnback.callbacks import logged_keys

    seen: list[list[str]] = []
    spy = nb.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(sorted(logs)))
    _fit(classifier(seed=1), spy, validation_split=0.25 if validating else 0.0)
    assert seen[0] == sorted(logged_keys(validating))
    assert spy.params["logs"] == logged_keys(validating)
    assert spy.params["epochs"] == 2 and spy.params["batch_size"] == 4
