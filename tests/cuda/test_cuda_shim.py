"""The CPU execution of CUDA kernels checks what a GPU would get wrong silently.

These tests prove the checks of :mod:`nnback.testing.cpu_kernels` work, so that the kernel
and fake-device tests built on it can be trusted: argument types as the GPU reads them,
out-of-bounds writes, races between the threads of a block, and launch shapes.
"""

from __future__ import annotations

import numpy
import pytest
from cuda_helpers import f64, i32, i64

from nnback.testing import cpu_kernels
from nnback.testing.cpu_kernels import KernelLaunchError

ROTATE = """
// out[t] = x[(t + 1) % blockDim.x], through shared memory, with and without the barrier.
extern "C" __global__ void rotate_synced(const float* x, float* out) {
    __shared__ float buffer[64];
    buffer[threadIdx.x] = x[threadIdx.x];
    __syncthreads();
    out[threadIdx.x] = buffer[(threadIdx.x + 1) % blockDim.x];
}
extern "C" __global__ void rotate_racy(const float* x, float* out) {
    __shared__ float buffer[64];
    buffer[threadIdx.x] = x[threadIdx.x];
    out[threadIdx.x] = buffer[(threadIdx.x + 1) % blockDim.x];
}
"""


def _forward(cpu: dict) -> cpu_kernels.CpuKernel:
    return cpu["dense"].get_function("bias_act_forward_f32")


def _args(z: numpy.ndarray, n: int = 3, k: int = 13) -> list:
    return [z, None, z, i64(n), i64(k), i32(0), f64(0.0)]


def test_a_missing_barrier_is_reported(cpu: dict) -> None:
    module = cpu_kernels.module_for_source(ROTATE, "rotate")
    x = numpy.arange(16, dtype=numpy.float32)
    out = numpy.zeros_like(x)
    module.get_function("rotate_synced")((1,), (16,), (x, out))
    numpy.testing.assert_array_equal(out, numpy.roll(x, -1))
    with pytest.raises(KernelLaunchError, match="missing __syncthreads"):
        module.get_function("rotate_racy")((1,), (16,), (x, out))


def test_an_out_of_bounds_write_is_reported(cpu: dict) -> None:
    z, y = numpy.ones((4, 13), numpy.float32), numpy.zeros((3, 13), numpy.float32)
    args = [z, None, y, i64(4), i64(13), i32(0), f64(0.0)]  # one row more than y holds
    with pytest.raises(KernelLaunchError, match="outside an array's bounds"):
        _forward(cpu)((1,), (32,), args)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.__setitem__(3, 3), "numpy.int64 scalar"),  # a Python int
        (lambda a: a.__setitem__(3, numpy.int32(3)), "numpy.int64 scalar, got int32"),
        (lambda a: a.__setitem__(6, 0.5), "numpy.float64 scalar"),
        (lambda a: a.__setitem__(0, numpy.zeros((3, 13))), "float32 array, got float64"),
        (lambda a: a.__setitem__(0, numpy.zeros((13, 3), numpy.float32).T), "C-contiguous"),
        (lambda a: a.pop(), "takes 7 arguments"),
    ],
)
def test_arguments_must_be_exactly_what_the_kernel_reads(cpu: dict, change, message) -> None:
    args = _args(numpy.zeros((3, 13), numpy.float32))
    change(args)
    with pytest.raises(KernelLaunchError, match=message):
        _forward(cpu)((1,), (32,), args)


def test_a_read_only_output_is_refused(cpu: dict) -> None:
    z = numpy.zeros((3, 13), numpy.float32)
    z.flags.writeable = False
    with pytest.raises(KernelLaunchError, match="read-only"):
        _forward(cpu)((1,), (32,), _args(z))


@pytest.mark.parametrize("grid, block", [((0,), (32,)), ((1,), (2048,)), ((1,), (0,))])
def test_impossible_launch_shapes_are_refused(cpu: dict, grid: tuple, block: tuple) -> None:
    with pytest.raises(KernelLaunchError, match="launch refused"):
        _forward(cpu)(grid, block, _args(numpy.zeros((3, 13), numpy.float32)))


def test_three_dimensional_indices(cpu: dict) -> None:
    # blockIdx/threadIdx in y and z follow CUDA's x-fastest numbering.
    source = """
    extern "C" __global__ void where(int* out) {
        const int block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
        const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
        out[block * blockDim.x * blockDim.y * blockDim.z + t] = block * 1000 + t;
    }
    """
    out = numpy.full(2 * 3 * 2 * 4 * 2 * 3, -1, numpy.int32)
    cpu_kernels.module_for_source(source, "where").get_function("where")(
        (2, 3, 2), (4, 2, 3), (out,)
    )
    blocks, threads = numpy.divmod(numpy.arange(out.size), 24)
    numpy.testing.assert_array_equal(out, blocks * 1000 + threads)


def test_signatures_are_parsed_from_the_source() -> None:
    signatures = cpu_kernels.parse_signatures(
        'extern "C" __global__ void f(const float* a, double* b, long long n, int c, bool d) {}'
    )
    (params,) = signatures.values()
    assert [(p.ctype, p.pointer, p.const) for p in params] == [
        ("float", True, True),
        ("double", True, False),
        ("long long", False, False),
        ("int", False, False),
        ("bool", False, False),
    ]
    with pytest.raises(ValueError, match="cannot parse"):
        cpu_kernels.parse_signatures('extern "C" __global__ void g(size_t n) {}')
