"""The example scripts as a new user meets them: ``--help`` and ``--quick`` (issue 12).

Each script runs as a real process. The ``--quick`` runs are the ones the first-hour list
named: fashion_mnist_mlp had none, minimal_network's looked broken, one_vs_seven ran on
trousers and sneakers while saying "1s from 7s".
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCRIPTS = sorted(path.name for path in EXAMPLES.glob("*.py") if not path.name.startswith("_"))


def _run(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NNBACK_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env["OPENBLAS_NUM_THREADS"] = "1"
    env["NNBACK_DATA"] = str(EXAMPLES / "no-such-data-folder")  # never find a local MNIST
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=EXAMPLES,
        timeout=timeout,
        check=False,
    )


def _first_paragraph(script: str) -> str:
    doc = ast.get_docstring(ast.parse((EXAMPLES / script).read_text(encoding="utf-8"))) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _accuracy(text: str) -> float:
    match = re.search(r"test accuracy (\d\.\d{4})", text)
    assert match, text
    return float(match.group(1))


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_describes_the_script_in_whole_sentences_and_offers_quick(script: str) -> None:
    result = _run(script, "--help", timeout=60)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    description = _first_paragraph(script)
    assert description.endswith("."), f"{script}: the docstring's first paragraph is cut off"
    assert description in text, f"{script}: --help does not show {description!r}"
    assert "--quick" in text


@pytest.mark.parametrize(
    "script", ["nnfs_ch16_binary_logistic_regression.py", "nnfs_ch17_regression.py"]
)
def test_scripts_with_their_own_data_offer_no_data_options(script: str) -> None:
    text = _run(script, "--help", timeout=60).stdout
    assert "--data-dir" not in text and "--download" not in text


def test_fashion_mnist_mlp_has_a_quick_run() -> None:
    result = _run("fashion_mnist_mlp.py", "--quick")
    assert result.returncode == 0, result.stderr
    assert "quick run" in result.stdout
    assert _accuracy(result.stdout) > 0.6  # ten classes: chance is 0.1


def test_minimal_network_quick_run_shows_a_network_that_learns() -> None:
    result = _run("minimal_network.py", "--quick")
    assert result.returncode == 0, result.stderr
    assert "quick run: the first 1000 images for 5 of the tutorial's 35 epochs" in result.stdout
    assert _accuracy(result.stdout) > 0.45  # was 0.222, predicting one class for everything


def test_one_vs_seven_uses_real_handwritten_digits_offline() -> None:
    pytest.importorskip("sklearn")
    result = _run("one_vs_seven.py", "--quick")
    assert result.returncode == 0, result.stderr
    assert "data: scikit-learn's load_digits, real handwritten 1s and 7s" in result.stdout
    assert "Fashion" not in result.stdout + result.stderr
    assert _accuracy(result.stdout) > 0.9


def test_fashion_mnist_cnn_has_a_quick_run() -> None:
    result = _run("fashion_mnist_cnn.py", "--quick")
    assert result.returncode == 0, result.stderr
    assert "quick run" in result.stdout
    assert "dropout 0.0" in result.stdout
    assert _accuracy(result.stdout) > 0.4  # one epoch on 1,000 images; chance is 0.1
