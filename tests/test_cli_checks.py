"""``nnback train``: options checked before any work, help with defaults, and Ctrl-C.

Every bad option must cost one line on stderr and exit status 2, before the dataset is
loaded (so no ``training ...`` line), and Ctrl-C must exit 130 without writing the
requested file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nnback as nb
from nnback.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPIRAL = ["train", "--dataset", "spiral", "--epochs", "1", "--hidden", "4", "--quiet"]


@pytest.fixture(autouse=True)
def _no_backend_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NNBACK_BACKEND", raising=False)


def _one_line_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``nnback`` in-process; it must exit 2 with one stderr line and nothing else."""
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err  # in particular: no "training ..." line
    assert captured.out == ""
    assert lines[0].startswith("nnback: error: ")
    return lines[0].removeprefix("nnback: error: ")


def test_train_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["train", "--help"])
    assert raised.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    for shown in (
        "passes over the training set (default: 10)",
        "(default: 64)",
        "(default: 256,128)",
        "(default: relu)",
        "(default: adam)",
        "learning rate (default: 0.001)",
        "shuffling (default: 0)",
        "(default: float32)",
        "(default: 0.1)",
        "(default: sample)",
        "(default: $NNBACK_BACKEND, else numpy)",
    ):
        assert shown in text, shown
    assert "(default: None)" not in text and "(default: False)" not in text


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seed", "-1"], "--seed: expected a whole number >= 0, got -1"),
        (["--lr", "-0.5"], "--lr: expected a finite number > 0, got -0.5"),
        (["--lr", "nan"], "--lr: expected a finite number > 0, got nan"),
        (["--validation-split", "1"], "--validation-split: expected a number in [0.0, 1.0)"),
        (["--batch-size", "0"], "--batch-size: expected a positive integer, got 0"),
    ],
)
def test_bad_numbers_fail_in_one_line(
    capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert _one_line_error(capsys, *SPIRAL, *flags).startswith(message)


def test_a_network_too_large_for_memory_fails_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    error = _one_line_error(capsys, "train", "--hidden", "100000000000")
    assert error.startswith("--hidden: a 784-100000000000-10 network needs about ")
    assert "of memory to train, more than this machine's " in error
    assert error.endswith("; use smaller layers")


def test_a_network_that_fits_is_not_refused() -> None:
    from nnback.cli_checks import check_network_size

    check_network_size(784, [4096, 4096], 10, 128, "float64")  # about 0.2 GB


def test_save_into_a_missing_directory_fails_before_training(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "nowhere" / "m.npz"
    error = _one_line_error(capsys, *SPIRAL, "--save", str(target))
    assert error == (
        f"--save: the directory {target.parent} does not exist; create it first "
        f"(mkdir -p {target.parent})"
    )


def test_save_onto_a_directory_fails_before_training(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    error = _one_line_error(capsys, *SPIRAL, "--save", str(tmp_path))
    assert error == f"--save: {tmp_path} is a directory; pass a file path such as " + str(
        tmp_path / "model.npz"
    )


def test_save_under_a_file_fails_before_training(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("x")
    error = _one_line_error(capsys, *SPIRAL, "--save", str(tmp_path / "file" / "m.npz"))
    assert error == f"--save: {tmp_path / 'file'} is a file, not a directory; fix the path"


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere"
)
def test_save_into_an_unwritable_directory_fails_before_training(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        error = _one_line_error(capsys, *SPIRAL, "--save", str(locked / "m.npz"))
    finally:
        locked.chmod(0o700)
    assert error.startswith(f"--save: cannot write in {locked} (")


def test_plot_without_matplotlib_fails_before_training(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    error = _one_line_error(capsys, *SPIRAL, "--plot", str(tmp_path / "plots"))
    assert error.startswith("--plot: the plots need matplotlib, which cannot be imported here")
    assert error.endswith("pip install 'nnback[plot]', or leave out --plot")


def test_plot_names_fashion_classes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from nnback import plot

    seen: dict[str, object] = {}

    def spy(*args: object, **kwargs: object) -> list[str]:
        seen.update(kwargs)
        return []

    monkeypatch.setattr(plot, "write_training_plots", spy)
    arguments = ["train", "--epochs", "1", "--hidden", "8", "--quiet", "--plot", str(tmp_path)]
    assert main(arguments) == 0
    assert seen["class_names"][7] == "Sneaker"  # type: ignore[index]


def _start_training(tmp_path: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "NNBACK_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env["OPENBLAS_NUM_THREADS"] = "1"
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nnback.cli",
            "train",
            "--dataset",
            "spiral",
            "--hidden",
            "4",
            "--epochs",
            "100000",
            "--save",
            "m.npz",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def interrupt_training(tmp_path: Path) -> tuple[int, str, str]:
    """Start ``nnback train --save m.npz`` in ``tmp_path``, send SIGINT once it is in its
    second epoch, and return (exit status, stdout, stderr). Bounded: 120 s in all."""
    process = _start_training(tmp_path)
    deadline = time.monotonic() + 120
    err_lines = []
    try:
        assert process.stderr is not None
        for line in process.stderr:  # per-epoch lines: stderr is not a terminal here
            err_lines.append(line)
            if line.startswith("epoch 1/") or time.monotonic() > deadline:
                break
        process.send_signal(signal.SIGINT)
        out, rest = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, out, "".join(err_lines) + rest


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child needs POSIX")
def test_ctrl_c_exits_130_and_keeps_only_a_partial_file(tmp_path: Path) -> None:
    (tmp_path / "m.npz").write_bytes(b"the previous model")
    code, out, err = interrupt_training(tmp_path)
    assert code == 130, err
    # The requested file is untouched: "nnback train && deploy" cannot ship a partial model.
    assert (tmp_path / "m.npz").read_bytes() == b"the previous model"
    last = err.strip().splitlines()[-1]
    assert last.startswith("nnback: interrupted at epoch "), err
    assert last.endswith("kept the partial model in m.partial.npz; m.npz was not written")
    assert "Traceback" not in err and "UserWarning" not in err
    assert "test accuracy" not in out
    model = nb.load_model(tmp_path / "m.partial.npz")
    assert model.predict([[0.1, 0.2]]).shape == (1, 3)
