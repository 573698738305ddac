"""The pytest-benchmark suite: ``pytest bench/ --benchmark-only``.

Each test function is a family of benchmarks (``test_dense_forward`` is the ``dense_forward``
family of :mod:`nnback.bench.catalog`) and is parametrized here, at collection, by
``runner``, ``dtype``, ``batch`` and ``case``: one test per workload, with the id
``runner-dtype-bBATCH-case`` (``numpy-float32-b128-784-256``), so ``-k "numba and b128"``
selects as expected. The runners are the backends :func:`nnback.testing.selected_backends`
chooses for the tests (``NNBACK_TEST_BACKENDS=numpy,numba`` narrows them), then PyTorch and
scikit-learn where installed; a runner that cannot load is skipped with its reason.

pytest-benchmark's ``group`` is the work; the terminal tables group by work, dtype and batch
size so each one compares runners on the same item. Turn the JSON into the nnback table
with ``nnback bench --report RESULTS.json``.

Options: ``--bench-samples N`` (or ``NNBACK_BENCH_SAMPLES``) samples per training epoch,
``--bench-epochs N`` (or ``NNBACK_BENCH_EPOCHS``) epochs of the real-data run,
``--bench-rounds N`` timed epochs per training benchmark, ``--bench-no-peers``,
``--bench-same-process`` (training epochs otherwise run in a worker process each, see
:mod:`nnback.bench.isolation`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from nnback.bench import Settings, Workload, family_workloads
from nnback.bench.workload import PEERS

_SETTINGS = pytest.StashKey[Settings]()
_REGISTRY = pytest.StashKey[dict[tuple[str, str], Workload]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nnback-bench", "nnback benchmark suite")
    group.addoption(
        "--bench-samples",
        type=int,
        default=None,
        help="samples per training epoch (default $NNBACK_BENCH_SAMPLES or 60000)",
    )
    group.addoption(
        "--bench-epochs",
        type=int,
        default=None,
        help="epochs of the real-data run (default $NNBACK_BENCH_EPOCHS or 10)",
    )
    group.addoption(
        "--bench-rounds", type=int, default=3, help="timed epochs per training benchmark"
    )
    group.addoption("--bench-no-peers", action="store_true", help="leave out PyTorch, sklearn")
    group.addoption(
        "--bench-same-process",
        action="store_true",
        help="run training epochs in the test process, not one worker process each",
    )


def _settings(config: pytest.Config) -> Settings:
    if _SETTINGS not in config.stash:
        config.stash[_SETTINGS] = Settings.from_environment(
            samples=config.getoption("--bench-samples"),
            real_epochs=config.getoption("--bench-epochs"),
            peers=not config.getoption("--bench-no-peers"),
            isolate=not config.getoption("--bench-same-process"),
        )
        config.stash[_REGISTRY] = {}
    return config.stash[_SETTINGS]


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = _settings(config)
    runners = ", ".join(
        name if reason is None else f"{name} (unavailable)" for name, reason in settings.backends
    )
    return [
        f"nnback bench: backends {runners}; peers {'on' if settings.peers else 'off'}",
        f"nnback bench: {settings.samples:,} samples per epoch, "
        f"{settings.real_epochs} real-data epochs, {config.getoption('--bench-rounds')} rounds",
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "workload" not in metafunc.fixturenames:
        return
    family = metafunc.function.__name__.removeprefix("test_")
    settings = _settings(metafunc.config)
    registry = metafunc.config.stash[_REGISTRY]
    params = []
    for work in family_workloads(family, settings):
        registry[(family, work.param_id)] = work
        marks = [pytest.mark.skip(reason=work.skip)] if work.skip else []
        if work.long:
            marks.append(pytest.mark.slow)
        values = (work.runner, work.dtype, work.batch, work.case)
        params.append(pytest.param(*values, id=work.param_id, marks=marks))
    metafunc.parametrize(("runner", "dtype", "batch", "case"), params)


# Placeholders, replaced by the direct parametrization above: they put the four names in
# every benchmark's fixture closure so ``pytest_generate_tests`` may parametrize them.
@pytest.fixture
def runner(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def dtype(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def batch(request: pytest.FixtureRequest) -> int | None:
    return request.param


@pytest.fixture
def case(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def workload(
    request: pytest.FixtureRequest, runner: str, dtype: str, batch: int | None, case: str
) -> Workload:
    """The workload of this test's parameters (built at collection)."""
    family = request.function.__name__.removeprefix("test_")
    return request.config.stash[_REGISTRY][(family, request.node.callspec.id)]


@pytest.fixture
def epoch_rounds(request: pytest.FixtureRequest) -> int:
    """Timed calls of a long workload (``--bench-rounds``)."""
    return max(1, int(request.config.getoption("--bench-rounds")))


def _rank(item: pytest.Item) -> int:
    callspec = getattr(item, "callspec", None)
    if callspec is None or "runner" not in callspec.params:
        return 1
    if getattr(item, "originalname", "") == "test_ceiling":
        return 0  # the machine first, before peers change thread state
    return 2 if callspec.params["runner"] in PEERS else 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_rank)


@pytest.hookimpl(hookwrapper=True)
def pytest_benchmark_group_stats(config: Any, benchmarks: Any, group_by: str) -> Any:
    """With the default ``--benchmark-group-by=group``, one table per work, dtype and batch."""
    outcome = yield
    if group_by != "group":
        return
    groups: dict[str, list[Any]] = defaultdict(list)
    for bench in benchmarks:
        info = bench["extra_info"] or {}
        parts = [str(bench["group"] or ""), info.get("dtype") or ""]
        parts.append(f"batch {info['batch']}" if info.get("batch") else "")
        groups[" | ".join(part for part in parts if part)].append(bench)
    for members in groups.values():
        members.sort(key=lambda bench: bench["name"])
    outcome.force_result(sorted(groups.items()))


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Add the CPU model, BLAS and threads, versions and backends to the saved JSON."""
    from nnback.bench.machine import machine_info as nnback_machine_info

    for key, value in nnback_machine_info().items():
        if key == "cpu" and isinstance(machine_info.get("cpu"), dict):
            for cpu_key, cpu_value in value.items():
                machine_info["cpu"].setdefault(cpu_key, cpu_value)
        else:
            machine_info.setdefault(key, value)
