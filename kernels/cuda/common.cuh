// common.cuh: helpers shared by every nnback CUDA kernel.
//
// The kernels in this folder are the CUDA twins of ops of nnback.backends.base.Backend (the
// NumPy reference). Each is written once as a template on the float type T and instantiated
// for float and double through extern "C" entry points named <kernel>_f32 / <kernel>_f64, so
// the names are stable for cupy.RawModule.get_function and for the CPU shim.
//
// Rules that keep them equal to the reference:
// * Every Python float hyper-parameter is passed as double and rounded to T *before* it is used,
//   because NumPy (NEP 50) rounds a Python scalar to the array's dtype before the operation.
//   Constants the reference computes in Python (1 - beta, 2 * l2, 1 - beta**step, n * k) are
//   computed in Python by the launcher too and passed in, for the same reason.
// * Operations happen in the reference's order, one rounding per NumPy operation; the sources
//   are compiled without FMA contraction (--fmad=false, g++ -ffp-contract=off) so that an
//   a * b + c is rounded twice, as NumPy does.
// * Reductions never depend on the grid size: a value is reduced by one block, in an order
//   fixed by the block shape alone (see nnb_block_sum).
//
// This header is textually inlined into each .cu file by nnback.kernels.cuda.load_source, so
// CuPy's kernel cache key covers it and no include path is needed.

#ifndef NNBACK_COMMON_CUH
#define NNBACK_COMMON_CUH

// Largest number of threads per block the launchers use; static shared arrays are this big.
#define NNB_MAX_BLOCK 256

// Activation codes; they must match ACTIVATION_CODES in nnback/backends/cupy_backend.py.
#define NNB_ACT_LINEAR 0
#define NNB_ACT_RELU 1
#define NNB_ACT_LEAKY_RELU 2
#define NNB_ACT_SIGMOID 3
#define NNB_ACT_TANH 4

// Overloads that pick the float or double CUDA maths function (NVRTC needs no header for them).
__device__ __forceinline__ float nnb_exp(float x) { return expf(x); }
__device__ __forceinline__ double nnb_exp(double x) { return exp(x); }
__device__ __forceinline__ float nnb_log(float x) { return logf(x); }
__device__ __forceinline__ double nnb_log(double x) { return log(x); }
__device__ __forceinline__ float nnb_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double nnb_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float nnb_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double nnb_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float nnb_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double nnb_abs(double x) { return fabs(x); }

// numpy.finfo(dtype).tiny: the smallest positive normal number (2**-126 and 2**-1022).
template <typename T> __device__ __forceinline__ T nnb_tiny();
template <> __device__ __forceinline__ float nnb_tiny<float>() { return 0x1p-126f; }
template <> __device__ __forceinline__ double nnb_tiny<double>() { return 0x1p-1022; }

// A quiet NaN, used to make misuse (a label outside the classes) visible in the result.
template <typename T> __device__ __forceinline__ T nnb_nan();
template <> __device__ __forceinline__ float nnb_nan<float>() { return __int_as_float(0x7fc00000); }
template <> __device__ __forceinline__ double nnb_nan<double>() {
    return __longlong_as_double(0x7ff8000000000000LL);
}

// Minus infinity: the identity of a max reduction, for threads that own no element.
template <typename T> __device__ __forceinline__ T nnb_neg_inf();
template <> __device__ __forceinline__ float nnb_neg_inf<float>() {
    return __int_as_float((int)0xff800000u);
}
template <> __device__ __forceinline__ double nnb_neg_inf<double>() {
    return __longlong_as_double((long long)0xfff0000000000000ull);
}

// numpy.sign: -1, 0 or 1, and NaN for NaN (0 * x would turn an infinity into NaN).
template <typename T> __device__ __forceinline__ T nnb_sign(T x) {
    if (x > T(0)) return T(1);
    if (x < T(0)) return T(-1);
    return x == T(0) ? T(0) : x;
}

// numpy.maximum semantics for the max reductions: a NaN on either side wins.
template <typename T> __device__ __forceinline__ T nnb_max_nan(T a, T b) {
    return (a != a || a > b) ? a : b;
}

// numpy.clip(x, lo, hi) for lo <= hi: a NaN stays NaN.
template <typename T> __device__ __forceinline__ T nnb_clip(T x, T lo, T hi) {
    return x < lo ? lo : (x > hi ? hi : x);
}

// Backend._flush_subnormal_inplace for one value: |s| < tiny becomes +0, anything else
// (NaN included) is kept. (CuPy compiles with -ftz=true, so on the GPU a float32 result
// that would be subnormal is already a zero by then; the flush gives the same zero, +0.)
template <typename T> __device__ __forceinline__ T nnb_flush(T s) {
    return nnb_abs(s) < nnb_tiny<T>() ? T(0) : s;
}

// Sum of `value` over the blockDim.x threads of one block (threadIdx.y == 0 row of a 1-D
// block), in a fixed order: first the threads above the largest power of two p <= blockDim.x
// fold onto the first ones, then a halving tree. The order depends on blockDim.x only, never
// on the grid, so a result is the same whatever the number of blocks. Every thread of the
// block must call it (it synchronises); every thread gets the total.
template <typename T> __device__ T nnb_block_sum(T value, T* shared) {
    const unsigned t = threadIdx.x;
    unsigned p = 1;
    while (p * 2 <= blockDim.x) p *= 2;
    shared[t] = value;
    __syncthreads();
    if (t + p < blockDim.x) shared[t] += shared[t + p];
    __syncthreads();
    for (unsigned s = p / 2; s > 0; s >>= 1) {
        if (t < s) shared[t] += shared[t + s];
        __syncthreads();
    }
    const T total = shared[0];
    __syncthreads();  // the caller may reuse `shared` at once
    return total;
}

// Maximum of `value` over the block, NaN-propagating like numpy.max; same shape as above.
template <typename T> __device__ T nnb_block_max(T value, T* shared) {
    const unsigned t = threadIdx.x;
    unsigned p = 1;
    while (p * 2 <= blockDim.x) p *= 2;
    shared[t] = value;
    __syncthreads();
    if (t + p < blockDim.x) shared[t] = nnb_max_nan(shared[t], shared[t + p]);
    __syncthreads();
    for (unsigned s = p / 2; s > 0; s >>= 1) {
        if (t < s) shared[t] = nnb_max_nan(shared[t], shared[t + s]);
        __syncthreads();
    }
    const T total = shared[0];
    __syncthreads();
    return total;
}

// Index of the first element a thread handles in a grid-stride loop, and the stride.
__device__ __forceinline__ long long nnb_first_index() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ long long nnb_grid_stride() {
    return (long long)blockDim.x * gridDim.x;
}

#endif  // NNBACK_COMMON_CUH
