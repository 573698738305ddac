"""Every CUDA kernel compiles with NVRTC, for float32 and float64, for sm_80 and sm_90.

No GPU is needed: NVRTC comes from the CUDA pip wheel (``nvidia-cuda-nvrtc-cu12``, or
``nvidia-cuda-nvrtc`` for CUDA 13). Each module is compiled once per architecture with the
options the CuPy backend uses, to CUBIN (and PTX), with ``--ptxas-options=-v`` so the
register and spill figures are checked too. A compile error fails the test with NVRTC's
log; the tests skip (saying why) only when no NVRTC library can be found.

The table of registers per kernel is printed only when asked: with ``pytest -s``, or with
``NNBACK_SHOW_REGISTERS=1`` (which prints it even while output is captured).
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from nnback.kernels import cuda as cuda_sources
from nnback.kernels.cuda.launch import ACTIVATION_CODES

from nnback.testing.nvrtc import CompileResult, Nvrtc, verbose_options

ARCHS = ("sm_80", "sm_90")
# What the GPU runs: the backend's options plus those cupy.RawModule adds.
OPTIONS = cuda_sources.COMPILE_OPTIONS + cuda_sources.CUPY_ADDED_OPTIONS

# With at most 64 registers a 256-thread block leaves room for 4 resident blocks (1024
# threads) per multiprocessor on sm_80/sm_90; the kernels use 12 to 45 today. A kernel that
# grows past this has changed character and deserves a look, so the test says so.
MAX_REGISTERS = 64

_results: dict[tuple[str, str], CompileResult] = {}


def _compile(nvrtc: Nvrtc, module: str, arch: str) -> CompileResult:
    if not _results:
        # All modules and architectures at once, one compilation per core (ctypes releases
        # the GIL during the call): this is most of the file's time.
        keys = [(m, a) for m in cuda_sources.SOURCES for a in ARCHS]

        def run(key: tuple[str, str]) -> CompileResult:
            source = cuda_sources.load_source(key[0])
            return nvrtc.compile(source, f"{key[0]}.cu", key[1], OPTIONS)

        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
            _results.update(zip(keys, pool.map(run, keys), strict=True))
    return _results[(module, arch)]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("module", cuda_sources.SOURCES)
def test_module_compiles(nvrtc: Nvrtc, module: str, arch: str) -> None:
    result = _compile(nvrtc, module, arch)
    assert result.ok, f"NVRTC {nvrtc.version} failed on {module}.cu for {arch}:\n{result.log}"
    assert result.cubin.startswith(b"\x7fELF"), "no CUBIN for a real architecture"
    ptx = result.ptx.decode()
    for kernel in cuda_sources.kernel_names(module):
        assert re.search(rf"\.entry\s+{kernel}\s*\(", ptx), f"{kernel} missing from the PTX"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("module", cuda_sources.SOURCES)
def test_no_spills_and_few_registers(nvrtc: Nvrtc, module: str, arch: str) -> None:
    result = _compile(nvrtc, module, arch)
    assert result.ok, result.log
    for kernel in cuda_sources.kernel_names(module):
        usage = result.resources.get(kernel)
        assert usage is not None, f"ptxas -v reported nothing for {kernel}:\n{result.log}"
        assert usage.spill_stores == usage.spill_loads == 0, f"{kernel} spills on {arch}"
        assert usage.stack_frame == 0, f"{kernel} uses a {usage.stack_frame}-byte stack frame"
        assert usage.registers <= MAX_REGISTERS, f"{kernel}: {usage.registers} registers"


# Kernels of the step books that move integers only (labels, the step cursor).
_DTYPE_FREE = {"gather_rows_i64", "step_advance"}


def test_every_kernel_exists_for_both_dtypes() -> None:
    for module in cuda_sources.SOURCES:
        names = set(cuda_sources.kernel_names(module))
        assert names, f'{module}.cu has no extern "C" kernels'
        for name in names - _DTYPE_FREE:
            twin = name.replace("_f32", "_f64") if "_f32" in name else name.replace("_f64", "_f32")
            assert twin != name and twin in names, f"{name} has no float32/float64 twin"


def test_compile_errors_fail_with_the_log(nvrtc: Nvrtc) -> None:
    broken = 'extern "C" __global__ void broken(float* x) { x[0] = undefined_name; }'
    result = nvrtc.compile(broken, "broken.cu", "sm_80")
    assert not result.ok
    assert "undefined_name" in result.log


def test_header_constants_match_python() -> None:
    common = (cuda_sources.source_dir() / "common.cuh").read_text()
    block = re.search(r"#define\s+NNB_MAX_BLOCK\s+(\d+)", common)
    assert block is not None and int(block.group(1)) == cuda_sources.MAX_BLOCK
    codes = {
        name.lower(): int(value)
        for name, value in re.findall(r"#define\s+NNB_ACT_(\w+)\s+(\d+)", common)
    }
    assert codes == ACTIVATION_CODES


def test_each_module_names_its_reference_ops() -> None:
    # The header comment of every .cu file names the Backend op each kernel must match.
    for module in cuda_sources.SOURCES:
        header = (cuda_sources.source_dir() / f"{module}.cu").read_text().split("#include")[0]
        assert "Reference ops" in header and "Backend." in header, module


def test_ptxas_report_survives_the_compilation_cache() -> None:
    # NVRTC 12.9 and later serve a repeated compilation from the driver's compute cache when
    # a driver is present, and such a compilation prints no ptxas -v report: on the first
    # real-GPU run (NVRTC 13.0) dense.cu and losses.cu came back without one. --no-cache
    # keeps the report; older versions have no cache and reject the option.
    for version in [(12, 4), (12, 8)]:
        assert verbose_options(version) == ("--ptxas-options=-v",), version
    for version in [(12, 9), (13, 0), (13, 5), (14, 0)]:
        assert verbose_options(version) == ("--ptxas-options=-v", "--no-cache"), version


def test_a_repeated_compilation_still_reports(nvrtc: Nvrtc) -> None:
    # Where a driver is present (a GPU machine), the second compilation of the same text
    # would be a cache hit without --no-cache; everywhere it must report every kernel.
    source = cuda_sources.load_source("dropout")
    for attempt in range(2):
        result = nvrtc.compile(source, "dropout.cu", "sm_90", OPTIONS)
        assert result.ok, result.log
        missing = set(cuda_sources.kernel_names("dropout")) - set(result.resources)
        assert not missing, f"attempt {attempt + 1}: no ptxas report for {sorted(missing)}"


def test_caller_options_are_not_doubled(nvrtc: Nvrtc) -> None:
    source = 'extern "C" __global__ void twice(float* x) { x[threadIdx.x] += 1.0f; }'
    result = nvrtc.compile(source, "twice.cu", "sm_80", nvrtc.verbose_options())
    assert result.ok, result.log
    assert result.resources["twice"].registers > 0


def _registers_table(nvrtc: Nvrtc) -> tuple[list[str], list[str]]:
    """The table's lines, and the kernels that have no figure on some architecture."""
    lines = [f"{'kernel':34} " + " ".join(f"{arch:>6}" for arch in ARCHS)]
    unreported = []
    for module in cuda_sources.SOURCES:
        for kernel in cuda_sources.kernel_names(module):
            cells = []
            for arch in ARCHS:
                usage = _compile(nvrtc, module, arch).resources.get(kernel)
                if usage is None:
                    unreported.append(f"{kernel} ({arch})")
                cells.append(f"{usage.registers if usage else '?':>6}")
            lines.append(f"{kernel:34} " + " ".join(cells))
    return lines, unreported


def test_resource_report(nvrtc: Nvrtc, capsys: pytest.CaptureFixture[str]) -> None:
    # The registers per kernel and architecture, for docs/gpu.md. Printed only when asked
    # (pytest -s, or NNBACK_SHOW_REGISTERS=1), so that plain runs stay quiet.
    lines, unreported = _registers_table(nvrtc)
    text = f"\nregisters per thread ({nvrtc.version[0]}.{nvrtc.version[1]} NVRTC):\n"
    text += "\n".join(lines)
    if os.environ.get("NNBACK_SHOW_REGISTERS", "").strip() not in ("", "0"):
        with capsys.disabled():
            print(text)
    else:
        print(text)  # shown by pytest -s, kept by the capture otherwise
    assert not unreported, f"no ptxas figures for {', '.join(unreported)}"
