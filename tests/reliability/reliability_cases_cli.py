"""The rows of docs/reliability.md's "Command line and first hour" section, as cases.

Kept apart from ``reliability_cases.py`` so the two lists grow without touching each
other; ``test_error_table.py`` runs both. A command-line case runs ``nnback`` (in-process,
or as a real process for Ctrl-C), checks its exit status, and raises :class:`CommandExit`
with the one line it printed on stderr, so the table's checks (one line, the excerpt in
order) apply to it like to any error.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from reliability_cases import Call, Case
from reliability_helpers import blobs, mlp

import nnback as nb

ROOT = Path(__file__).resolve().parents[2]
SPIRAL = ["train", "--dataset", "spiral", "--epochs", "1", "--hidden", "4", "--quiet"]


class CommandExit(Exception):
    """``nnback`` exited with the expected status; the message is what it printed."""


@dataclass(frozen=True)
class CommandCase(Case):
    """A row whose outcome is an exit status: the table says ``exit N``."""

    exit_code: int = 2

    @property
    def outcome(self) -> str:
        return f"exit {self.exit_code}"


def _main(code: int, *argv: str) -> None:
    """Run ``nnback argv`` in-process; it must exit ``code`` having printed nothing on
    stdout; raise CommandExit with its stderr (more than one line fails the table test)."""
    from nnback.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    assert status == code, f"exit {status}, not {code}: {err.getvalue()}"
    assert out.getvalue() == "", out.getvalue()
    raise CommandExit(err.getvalue().strip())


def _cli(code: int, *argv: str) -> Call:
    return lambda mp, tmp: _main(code, *argv)


def _cli_in(code: int, *argv: str) -> Call:
    """Like _cli, with ``{tmp}`` in the arguments replaced by the test's folder."""
    return lambda mp, tmp: _main(code, *(a.replace("{tmp}", str(tmp)) for a in argv))


def _no_matplotlib(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        mp.delitem(sys.modules, name)
    mp.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    _main(2, *SPIRAL, "--plot", str(tmp / "plots"))


def _unwritable(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    # Permission bits do not stop root (the CI user), so the probe file's creation fails
    # here by a stand-in; the check itself is the same code either way.
    from nnback import cli_checks

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    mp.setattr(cli_checks.tempfile, "TemporaryFile", refuse)
    _main(2, *SPIRAL, "--save", str(tmp / "m.npz"))


def _interrupt(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    """``nnback train --save m.npz`` as a real process, sent SIGINT in its second epoch."""
    if sys.platform == "win32":
        pytest.skip("SIGINT to a child process needs POSIX")
    env = {k: v for k, v in os.environ.items() if k != "NNBACK_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env["OPENBLAS_NUM_THREADS"] = "1"
    command = [*SPIRAL[:-1], "--epochs", "100000", "--save", "m.npz"]
    process = subprocess.Popen(
        [sys.executable, "-m", "nnback.cli", *command],
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    lines = []
    try:
        assert process.stderr is not None
        for line in process.stderr:  # one line per epoch: stderr is not a terminal
            lines.append(line)
            if line.startswith("epoch 1/") or time.monotonic() > deadline:
                break
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    err = "".join(lines) + rest
    assert process.returncode == 130, err
    assert not (tmp / "m.npz").exists()
    nb.load_model(tmp / "m.partial.npz")  # what was kept is a whole, loadable model
    raise CommandExit(err.strip().splitlines()[-1])


def _checkpoint_without_validation(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    X, y = blobs(n=12)
    checkpoint = nb.ModelCheckpoint(tmp / "ck_{val_loss:.2f}.npz")
    mlp().fit(X, y, epochs=2, callbacks=[checkpoint], verbose=0)


def _command(id_: str, call: Call, code: int, *fragments: str) -> CommandCase:
    return CommandCase(id_, call, CommandExit, fragments, None, code)


CLI_CASES: list[Case] = [
    _command(
        "cli-interrupt", _interrupt, 130, "interrupted at epoch", "m.partial.npz", "not written"
    ),
    _command(
        "cli-save-missing-directory",
        _cli_in(2, *SPIRAL, "--save", "{tmp}/nowhere/m.npz"),
        2,
        "--save:",
        "does not exist",
        "mkdir -p",
    ),
    _command(
        "cli-save-to-directory",
        _cli_in(2, *SPIRAL, "--save", "{tmp}"),
        2,
        "--save:",
        "is a directory",
        "model.npz",
    ),
    _command("cli-save-unwritable", _unwritable, 2, "--save:", "cannot write in", "Permission"),
    _command("cli-seed-negative", _cli(2, *SPIRAL, "--seed", "-1"), 2, "--seed:", ">= 0", "-1"),
    _command(
        "cli-hidden-huge",
        _cli(2, "train", "--hidden", "100000000000"),
        2,
        "--hidden:",
        "784-100000000000-10",
        "memory",
        "use smaller layers",
    ),
    _command("cli-plot-no-matplotlib", _no_matplotlib, 2, "--plot:", "matplotlib", "nnback[plot]"),
    Case(
        "checkpoint-template-no-validation",
        _checkpoint_without_validation,
        nb.InputError,
        ("ModelCheckpoint(path)", "{val_loss}", "no validation data", "validation_split"),
    ),
    Case(
        "sequential-unknown-backend",
        lambda mp, tmp: nb.Sequential([nb.Dense(3, 3)], backend="torch"),
        nb.UnknownBackendError,
        ("unknown backend 'torch'", "available: numpy"),
    ),
]
