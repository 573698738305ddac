"""``nnback bench`` and ``python -m nnback.bench``: registration, run, report, plot."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nnback import cli
from nnback.bench_cli import main as bench_main

Factory = Callable[..., dict[str, Any]]


def test_bench_is_a_subcommand_of_nnback(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--list", "--backends", "numpy", "--no-peers"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert any(line.startswith("train epoch 784-256-128-10 | numpy-float32-b32") for line in listed)
    assert any(line.startswith("ceiling: memory bandwidth") for line in listed)


def test_python_dash_m_runs_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nnback.bench", "--list", "--backends", "numpy", "--no-peers"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "optimizer_step adam 784x256 | numpy-float32-adam-784x256" in done.stdout


def test_a_tiny_run_prints_the_table_and_saves_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run.json"
    argv = ["--backends", "numpy", "--no-peers", "--filter", "softmax_crossentropy"]
    argv += ["--max-time", "0.01", "--json", str(out), "--quiet"]
    assert bench_main(argv) == 0
    printed = capsys.readouterr().out
    assert "softmax_crossentropy n x 10" in printed and "machine:" in printed
    saved = json.loads(out.read_text())
    groups = {bench["group"] for bench in saved["benchmarks"]}
    assert groups == {"softmax_crossentropy n x 10", "ceiling: memory bandwidth (copy 64 MiB)"}
    assert saved["nnback_settings"]["filter"] == "softmax_crossentropy"


@pytest.mark.parametrize("same_process", [False, True])
def test_training_epochs_run_in_a_worker_unless_asked_not_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], same_process: bool
) -> None:
    out = tmp_path / "run.json"
    argv = ["--backends", "numpy", "--no-peers", "--filter", "train_step_overhead"]
    argv += ["--samples", "64", "--rounds", "1", "--json", str(out), "--quiet"]
    assert bench_main(argv + (["--same-process"] if same_process else [])) == 0
    (epoch,) = [b for b in json.loads(out.read_text())["benchmarks"] if "ceiling" not in b["group"]]
    assert epoch["extra_info"].get("isolated", False) is not same_process
    # The same run read by its best round: the time column is named after the statistic.
    capsys.readouterr()
    assert bench_main(["--report", str(out), "--stat", "min"]) == 0
    assert " min " in capsys.readouterr().out.split("------")[0]


def test_report_of_a_saved_run_in_markdown(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_entry: Factory,
    make_document: Factory,
    write_json: Callable[[str, dict[str, Any]], str],
) -> None:
    path = write_json("r.json", make_document(make_entry("op", "numpy", 1e-3)))
    assert bench_main(["--report", path, "--format", "markdown"]) == 0
    assert "| op | float32 | 128 | numpy | 1 ms |" in capsys.readouterr().out


def test_plot_draws_a_chart(
    tmp_path: Path,
    make_entry: Factory,
    make_document: Factory,
    write_json: Callable[[str, dict[str, Any]], str],
) -> None:
    pytest.importorskip(
        "matplotlib", reason="matplotlib is not installed: pip install 'nnback[plot]'"
    )
    doc = make_document(make_entry("op", "numpy", 2e-3), make_entry("op", "numba", 1e-3))
    picture = tmp_path / "chart.png"
    assert bench_main(["--report", write_json("r.json", doc), "--plot", str(picture)]) == 0
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    make_entry: Factory,
    make_document: Factory,
    write_json: Callable[[str, dict[str, Any]], str],
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    doc = make_document(make_entry("op", "numpy", 2e-3))
    path = write_json("r.json", doc)
    assert bench_main(["--report", path, "--plot", str(tmp_path / "c.png")]) == 2
    assert "pip install 'nnback[plot]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backends", "nope", "--list"], "unknown backend 'nope'"),
        (["--backends", "numpy", "--filter", "no-such-benchmark"], "matches no benchmark"),
        (["--samples", "0", "--list"], "--samples"),
    ],
)
def test_user_errors_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench_main(argv) == 2
    assert message in capsys.readouterr().err
