// cpu_shim.h: run the CUDA kernels of this folder on the CPU, for tests without a GPU.
//
// The same .cu text that NVRTC compiles is compiled as C++17 by g++ after this header (see
// nnback/testing/cpu_kernels.py). The header supplies what CUDA C++ adds to C++:
//   * __global__ / __device__ / __forceinline__ / __shared__ qualifiers;
//   * threadIdx, blockIdx, blockDim, gridDim;
//   * __syncthreads, the bit-cast intrinsics the kernels use, atomicAdd;
// and a launcher, nnb_shim::launch, that runs a kernel over a grid like the GPU would:
// blocks one after another, and the threads of a block as cooperative fibers on the calling
// OS thread. A fiber runs until it reaches __syncthreads or the end of the kernel; when every
// live thread of the block has reached the barrier, the next phase starts. Phases alternate
// the order in which threads run (0..n-1, then n-1..0), starting with either (the `order`
// argument): the Python launcher runs each launch both ways and compares, so a missing
// __syncthreads, which makes the result depend on which thread ran first, is reported
// instead of passing by luck. __shared__ variables become function-local statics: one copy,
// seen by every fiber of the block, as on the GPU (thread_local so that two Python threads
// may launch at once).
//
// Fibers are made once per OS thread with makecontext and kept (each loops: run the kernel
// for the current block, then yield), and switched with _setjmp/_longjmp, which unlike
// swapcontext make no system call: a launch costs about a microsecond per simulated thread.
// (The library is built with _FORTIFY_SOURCE off, whose longjmp check refuses a jump to
// another stack.) A kernel without barriers may also run in "direct" mode, each thread a
// plain call; a __syncthreads met in that mode abandons the launch with status 5, and the
// caller runs it again with fibers on fresh buffers.
//
// Numerics: x86-64 evaluates float in single precision (SSE), like the GPU; the library is
// built with -ffp-contract=off, matching NVRTC's --fmad=false. The maths functions are
// glibc's, which can differ from CUDA's and NumPy's in the last bits.
#ifndef NNBACK_CPU_SHIM_H
#define NNBACK_CPU_SHIM_H

#include <math.h>
#include <setjmp.h>
#include <ucontext.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static thread_local
#define __restrict__ __restrict

struct dim3 {
    unsigned int x, y, z;
};

inline thread_local dim3 threadIdx = {0, 0, 0};
inline thread_local dim3 blockIdx = {0, 0, 0};
inline thread_local dim3 blockDim = {1, 1, 1};
inline thread_local dim3 gridDim = {1, 1, 1};

inline float __int_as_float(int bits) {
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
}
inline double __longlong_as_double(long long bits) {
    double value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
}

// Threads of a block are fibers on one OS thread and blocks run one after another, so a
// read-modify-write cannot be interleaved: a plain update is atomic here.
template <typename T> inline T atomicAdd(T* address, T value) {
    const T old = *address;
    *address = old + value;
    return old;
}

namespace nnb_shim {

// Bytes of stack per simulated thread; the kernels keep a few scalars each.
constexpr std::size_t kStackBytes = 64 * 1024;
constexpr unsigned kMaxThreads = 1024;  // CUDA's limit per block

struct Fiber {
    ucontext_t context;  // only to start the fiber, once
    jmp_buf env;         // where it continues when resumed
    bool started = false;
    bool done = false;
    dim3 index = {0, 0, 0};
    char* stack = nullptr;
};

struct Block {
    jmp_buf scheduler;
    Fiber** fibers = nullptr;
    std::size_t current = 0;
    void (*body)(void*) = nullptr;
    void* payload = nullptr;
    bool direct = false;  // threads run as plain calls: a barrier abandons the launch
    jmp_buf abandon;
};

inline thread_local Block* active = nullptr;

// Suspend the running fiber and go back to the scheduler (out of line: setjmp returns twice).
__attribute__((noinline)) inline void yield(Fiber& fiber, Block& block) {
    if (_setjmp(fiber.env) == 0) _longjmp(block.scheduler, 1);
}

// A fiber's whole life: run the kernel body for whichever block is current, mark the thread
// done, yield; resumed for the next block (or launch), start over. It never returns.
inline void fiber_main() {
    for (;;) {
        Block* block = active;
        block->body(block->payload);
        Fiber& fiber = *block->fibers[block->current];
        fiber.done = true;
        yield(fiber, *block);
    }
}

// The fibers of this OS thread, made on first need and kept (their stacks hold live frames,
// so they are never moved or freed while the thread lives).
struct Pool {
    std::vector<Fiber*> fibers;
    ~Pool() {
        for (Fiber* fiber : fibers) {
            std::free(fiber->stack);
            delete fiber;
        }
    }
};

inline Fiber** pool(unsigned count) {
    static thread_local Pool threads;
    while (threads.fibers.size() < count) {
        Fiber* fiber = new Fiber();
        fiber->stack = static_cast<char*>(std::malloc(kStackBytes));
        if (fiber->stack == nullptr || getcontext(&fiber->context) != 0) {
            std::free(fiber->stack);
            delete fiber;
            return nullptr;
        }
        fiber->context.uc_stack.ss_sp = fiber->stack;
        fiber->context.uc_stack.ss_size = kStackBytes;
        fiber->context.uc_link = nullptr;
        makecontext(&fiber->context, fiber_main, 0);
        threads.fibers.push_back(fiber);
    }
    return threads.fibers.data();
}

// Switch from the scheduler to a fiber until it yields (out of line: setjmp returns twice).
__attribute__((noinline)) inline void resume(Fiber& fiber, Block& block) {
    if (_setjmp(block.scheduler) == 0) {
        if (!fiber.started) {
            fiber.started = true;
            setcontext(&fiber.context);  // the first time only: one system call per fiber
        }
        _longjmp(fiber.env, 1);
    }
}

// Run one block: every thread as a fiber, phase by phase between barriers; the first phase
// runs the threads in increasing order if `forward`, else in decreasing order.
inline int run_block(Block& block, bool forward) {
    const unsigned count = blockDim.x * blockDim.y * blockDim.z;
    for (unsigned t = 0; t < count; ++t) {
        Fiber& fiber = *block.fibers[t];
        fiber.index = {t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y)};
        fiber.done = false;
    }
    for (;;) {
        unsigned live = 0;
        for (unsigned step = 0; step < count; ++step) {
            const unsigned t = forward ? step : count - 1 - step;
            Fiber& fiber = *block.fibers[t];
            if (fiber.done) continue;
            block.current = t;
            threadIdx = fiber.index;
            resume(fiber, block);
            if (!fiber.done) ++live;  // stopped at a barrier
        }
        if (live == 0) return 0;
        forward = !forward;  // every live thread is at the barrier: release it
    }
}

// Run one thread as a plain call; 5 if it reached a barrier (which direct mode cannot honour).
__attribute__((noinline)) inline int run_direct_thread(Block& block) {
    if (setjmp(block.abandon) != 0) return 5;
    block.body(block.payload);
    return 0;
}

// Run one block in direct mode: each thread to its end, one after another, in `forward` or
// reverse order (so that the two orders can still be compared).
inline int run_block_direct(Block& block, bool forward) {
    const unsigned count = blockDim.x * blockDim.y * blockDim.z;
    for (unsigned step = 0; step < count; ++step) {
        const unsigned t = forward ? step : count - 1 - step;
        threadIdx = {t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y)};
        block.current = t;
        if (run_direct_thread(block) != 0) return 5;
    }
    return 0;
}

// mode 0: fibers (any kernel); mode 1: direct (kernels without __syncthreads).
inline int run_grid(const unsigned* grid, const unsigned* block_shape, int order, int mode,
                    void (*body)(void*), void* payload) {
    const unsigned count = block_shape[0] * block_shape[1] * block_shape[2];
    if (count == 0 || count > kMaxThreads) return 1;
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0) return 1;
    if (active != nullptr) return 2;  // a kernel cannot launch a kernel here
    Block block;
    block.body = body;
    block.payload = payload;
    block.direct = mode != 0;
    if (!block.direct) {
        block.fibers = pool(count);
        if (block.fibers == nullptr) return 4;
    }
    blockDim = {block_shape[0], block_shape[1], block_shape[2]};
    gridDim = {grid[0], grid[1], grid[2]};
    active = &block;
    int status = 0;
    for (unsigned z = 0; z < grid[2] && status == 0; ++z) {
        for (unsigned y = 0; y < grid[1] && status == 0; ++y) {
            for (unsigned x = 0; x < grid[0] && status == 0; ++x) {
                blockIdx = {x, y, z};
                status = block.direct ? run_block_direct(block, order == 0)
                                      : run_block(block, order == 0);
            }
        }
    }
    active = nullptr;
    return status;
}

// Launch `kernel` with its arguments given as cuLaunchKernel does: args[i] points to the
// value of parameter i (for a pointer parameter, to the pointer).
template <typename... A, std::size_t... I>
int launch_with(void (*kernel)(A...), const unsigned* grid, const unsigned* block, int order,
                int mode, void** args, std::index_sequence<I...>) {
    std::tuple<std::decay_t<A>...> values(*static_cast<std::decay_t<A>*>(args[I])...);
    auto call = [&values, kernel]() { kernel(std::get<I>(values)...); };
    auto trampoline = [](void* payload) { (*static_cast<decltype(call)*>(payload))(); };
    return run_grid(grid, block, order, mode, trampoline, &call);
}

template <typename... A>
int launch(void (*kernel)(A...), const unsigned* grid, const unsigned* block, int order,
           int mode, void** args) {
    return launch_with(kernel, grid, block, order, mode, args, std::index_sequence_for<A...>{});
}

}  // namespace nnb_shim

inline void __syncthreads() {
    nnb_shim::Block* block = nnb_shim::active;
    if (block->direct) longjmp(block->abandon, 1);  // back to run_direct_thread, status 5
    nnb_shim::yield(*block->fibers[block->current], *block);
}

// One exported launcher per kernel: nnb_launch_<name>(grid[3], block[3], order, mode, args).
#define NNB_CPU_EXPORT(name)                                                                \
    extern "C" int nnb_launch_##name(const unsigned* grid, const unsigned* block, int order, \
                                     int mode, void** args) {                              \
        return nnb_shim::launch(name, grid, block, order, mode, args);                     \
    }

#endif  // NNBACK_CPU_SHIM_H
