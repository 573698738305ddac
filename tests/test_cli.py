"""The command line: ``nnback info`` and ``nnback train``, in-process and as a real process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

import nnback as nb
from nnback.backends import registered_backends
from nnback.cli import THREAD_VARIABLES, main
from nnback.datasets import load_sample

ROOT = Path(__file__).resolve().parents[1]
# Small and quick: the embedded sample with one narrow hidden layer.
FAST = ["--epochs", "1", "--hidden", "32", "--quiet"]
# Quicker still: the spiral set (3,000 points in 2-D) with a tiny hidden layer.
SPIRAL = ["train", "--dataset", "spiral", "--epochs", "1", "--hidden", "4", "--quiet"]


def _environment(**extra: str) -> dict[str, str]:
    """The current environment with the repository importable and one BLAS thread (the
    test machine is shared: idle-spinning BLAS threads only slow small matrices down)."""
    env = {key: value for key, value in os.environ.items() if key != "NNBACK_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env["OPENBLAS_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nnback.cli", *args],
        capture_output=True,
        text=True,
        env=_environment(**env),
        cwd=ROOT,
        timeout=120,
        check=False,
    )


@pytest.fixture(autouse=True)
def _no_backend_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NNBACK_BACKEND", raising=False)


def test_info_lists_backends_and_thread_variables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"nnback {nb.__version__}\n")
    status = nb.backend_status()
    for name in registered_backends():
        if status[name] is None:
            assert re.search(rf"^  {name}: available$", out, re.MULTILINE), name
        else:
            assert re.search(rf"^  {name}: unavailable: .+$", out, re.MULTILINE), name
    for variable in THREAD_VARIABLES:
        assert re.search(rf"^  {variable}=.+$", out, re.MULTILINE), variable
    assert "threads and BLAS:" in out


def test_info_shows_a_thread_variable_value(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert main(["info"]) == 0
    assert "  OMP_NUM_THREADS=3\n" in capsys.readouterr().out


def test_train_on_the_sample_and_save(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "trained.npz"
    assert main(["train", *FAST, "--seed", "3", "--save", str(path)]) == 0
    captured = capsys.readouterr()
    match = re.search(r"test accuracy (\d\.\d{4}), test loss (\d+\.\d{4}); 1 epochs", captured.out)
    assert match, captured.out
    accuracy = float(match.group(1))
    assert accuracy > 0.5  # ten classes: chance is 0.1
    assert f"saved the model to {path}" in captured.out
    assert "epoch 1/1" not in captured.err  # --quiet: no per-epoch lines

    # The saved model is the trained one: it scores the printed accuracy on the test split.
    model = nb.load_model(path)
    _, (X_test, y_test) = load_sample()
    scores = model.evaluate(X_test, y_test)
    assert round(scores["accuracy"], 4) == accuracy
    assert model.predict(X_test[:5]).shape == (5, 10)
    assert [layer.n_neurons for layer in model.layers if isinstance(layer, nb.Dense)] == [32, 10]


def test_train_prints_a_line_per_epoch(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["train", "--dataset", "spiral", "--epochs", "2", "--hidden", "8"]
    assert main([*arguments, "--optimizer", "sgd", "--lr", "0.5", "--activation", "tanh"]) == 0
    err = capsys.readouterr().err
    assert "training spiral: 3000 samples, 2 features, 3 classes on the numpy backend" in err
    for epoch in (1, 2):
        assert re.search(rf"^epoch {epoch}/2 - loss \d", err, re.MULTILINE), err


def test_train_on_another_backend_and_dtype(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SPIRAL, "--backend", "numpy", "--dtype", "float64"]) == 0
    assert "(float64)" in capsys.readouterr().err


def test_train_as_a_process() -> None:
    result = _run("train", *FAST, "--hidden", "16")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^test accuracy 0\.\d{4}", result.stdout, re.MULTILINE), result.stdout


def test_an_unknown_backend_is_one_line_naming_the_available_ones() -> None:
    result = _run("train", *FAST, NNBACK_BACKEND="bogus")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nnback: error: NNBACK_BACKEND='bogus': unknown backend 'bogus'")
    for name in nb.available_backends():
        assert name in lines[0]
    assert result.stdout == ""


def test_an_unknown_backend_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", *FAST, "--backend", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("nnback: error: unknown backend 'nope'; available: numpy")


@pytest.mark.parametrize(
    ("hidden", "message"),
    [
        ("abc", "--hidden: expected comma-separated layer sizes, got 'abc'"),
        ("64,x", "--hidden: expected comma-separated layer sizes, got '64,x'"),
        ("0,3", "--hidden: layer sizes must be positive, got '0,3'"),
    ],
)
def test_bad_hidden_sizes(capsys: pytest.CaptureFixture[str], hidden: str, message: str) -> None:
    assert main(["train", "--dataset", "spiral", "--epochs", "1", "--hidden", hidden]) == 2
    assert capsys.readouterr().err.strip() == f"nnback: error: {message}"


def test_bad_numbers_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--dataset", "spiral", "--epochs", "0", "--hidden", "4"]) == 2
    # Checked before the dataset is loaded: the error is the only line.
    assert capsys.readouterr().err.strip() == (
        "nnback: error: --epochs: expected a positive integer, got 0"
    )


def test_argparse_rejects_unknown_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["train", "--dataset", "cifar"])
    assert raised.value.code == 2
    assert "invalid choice: 'cifar'" in capsys.readouterr().err


def test_the_save_is_loadable_on_the_strict_device(tmp_path: Path) -> None:
    from nnback.testing import StrictBackend

    path = tmp_path / "spiral.npz"
    assert main([*SPIRAL, "--save", str(path)]) == 0
    host = nb.load_model(path)
    device = nb.load_model(path, backend=StrictBackend())
    X = numpy.random.default_rng(0).uniform(-1, 1, size=(7, 2))
    numpy.testing.assert_array_equal(device.predict(X), host.predict(X))


# --model cnn (issue 14): the CNN of nnback.zoo on image datasets.


@pytest.fixture()
def _small_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sample cut to 256 training and 128 test images: a CNN epoch on the numpy
    backend then takes about a second instead of twenty."""
    import nnback.cli as cli

    def load(name: str, data_dir: str | None, seed: int) -> tuple:
        assert name == "sample"
        (X, y), (X_test, y_test) = load_sample()
        return X[:256], y[:256], X_test[:128], y_test[:128], "classification"

    monkeypatch.setattr(cli, "_load_dataset", load)


@pytest.mark.usefixtures("_small_sample")
def test_train_a_cnn_and_save_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from nnback.conv_layers import Conv2D

    path = tmp_path / "cnn.npz"
    arguments = ["train", "--model", "cnn", "--epochs", "1", "--quiet", "--save", str(path)]
    assert main([*arguments, "--dropout", "0.1", "--validation-split", "0"]) == 0
    captured = capsys.readouterr()
    assert "model: the CNN (dropout 0.1)" in captured.err
    match = re.search(r"test accuracy (\d\.\d{4}), test loss", captured.out)
    assert match, captured.out
    model = nb.load_model(path)
    convs = [(c.in_channels, c.out_channels) for c in model.layers if isinstance(c, Conv2D)]
    assert convs == [(1, 32), (32, 64)]
    assert [layer.n_neurons for layer in model.layers if isinstance(layer, nb.Dense)] == [128, 10]
    _, (X_test, y_test) = load_sample()
    scores = model.evaluate(X_test[:128], y_test[:128])
    assert round(scores["accuracy"], 4) == float(match.group(1))


def test_train_defaults_to_the_mlp(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(SPIRAL) == 0
    assert "model: an MLP 2-4-3" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--model", "cnn", "--hidden", "32"],
            "--hidden does not apply to --model cnn: the CNN's layers are fixed "
            "(nnback.zoo.build_cnn); leave it out",
        ),
        (
            ["--model", "cnn", "--activation", "tanh"],
            "--activation does not apply to --model cnn: the CNN's layers are fixed "
            "(nnback.zoo.build_cnn); leave it out",
        ),
        (
            ["--dropout", "0.5"],
            "--dropout does not apply to --model mlp: it is an option of --model cnn; leave it out",
        ),
        (
            ["--model", "cnn", "--dataset", "spiral"],
            "--dataset spiral: --model cnn takes 28x28 images; use one of sample, mnist, "
            "fashion-mnist",
        ),
        (
            ["--model", "cnn", "--dropout", "1"],
            "--dropout: expected a number in [0.0, 1.0), got 1.0",
        ),
    ],
)
def test_options_that_do_not_apply_to_the_model_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    assert main(["train", "--epochs", "1", *arguments]) == 2
    # Refused before any data is loaded or any model built: the error is the only line.
    assert capsys.readouterr().err.strip() == f"nnback: error: {message}"
