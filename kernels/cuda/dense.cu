// dense.cu: the epilogues of a dense layer, around the cuBLAS GEMMs.
//
// Reference ops (nnback/backends/base.py):
//   bias_act_forward        Backend.dense_forward after the GEMM: z += b, then
//                           Backend.activation_forward(z, act, alpha); also activation_forward
//                           alone when b is null (y may be z: in place).
//   act_backward            Backend.activation_backward(dy, y, act, alpha), element-wise.
//   act_backward_bias_grad  Backend.dense_backward before the GEMMs: dz = activation_backward(
//                           dy, y) and db = sum(dz, axis=0), in one pass over dy and y.
//   column_sum              the second stage of that db when the rows were split in chunks.
// Softmax is not handled here (it needs a row reduction): see softmax.cu.
#include "common.cuh"

// Backend.activation_forward for one pre-activation value.
template <typename T> __device__ __forceinline__ T nnb_activate(T z, int act, T alpha) {
    if (act == NNB_ACT_RELU) return z < T(0) ? T(0) : z;  // numpy.maximum(z, 0) keeps NaN
    if (act == NNB_ACT_LEAKY_RELU) return z > T(0) ? z : z * alpha;
    if (act == NNB_ACT_SIGMOID) {
        // exp of a non-positive number never overflows; pick the stable branch per sign.
        const T e = nnb_exp(-nnb_abs(z));
        return z >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
    }
    if (act == NNB_ACT_TANH) return nnb_tanh(z);
    return z;  // linear
}

// Backend.activation_backward for one element, from the output y (not the pre-activation).
template <typename T> __device__ __forceinline__ T nnb_activation_grad(T dy, T y, int act, T alpha) {
    if (act == NNB_ACT_RELU) return y > T(0) ? dy : T(0) * dy;  // 0 * dy keeps NaN/inf -> NaN
    if (act == NNB_ACT_LEAKY_RELU) return y > T(0) ? dy : dy * alpha;
    if (act == NNB_ACT_SIGMOID) return dy * y * (T(1) - y);
    if (act == NNB_ACT_TANH) return dy * (T(1) - y * y);
    return dy;  // linear
}

// y[i] = act(z[i] + b[i % k]) over the n * k elements of row-major z; b (k,) may be null.
template <typename T>
__device__ void bias_act_forward(const T* z, const T* b, T* y, long long n, long long k, int act,
                                 double alpha_d) {
    const T alpha = (T)alpha_d;
    const long long size = n * k;
    const long long stride = nnb_grid_stride();
    long long i = nnb_first_index();
    if (i >= size) return;
    // The column is tracked incrementally: a 64-bit division per element would cost more
    // instructions than the element's memory traffic.
    long long col = i % k;
    const long long col_step = stride % k;
    for (; i < size; i += stride) {
        T v = z[i];
        if (b) v = v + b[col];
        y[i] = nnb_activate(v, act, alpha);
        col += col_step;
        if (col >= k) col -= k;
    }
}

// dz[i] = activation_backward(dy[i], y[i]) over `size` elements; dz may be dy.
template <typename T>
__device__ void act_backward(const T* dy, const T* y, T* dz, long long size, int act, double alpha_d) {
    const T alpha = (T)alpha_d;
    for (long long i = nnb_first_index(); i < size; i += nnb_grid_stride()) {
        dz[i] = nnb_activation_grad(dy[i], y[i], act, alpha);
    }
}

// dz = activation_backward(dy, y) (n, k) and partial[c, j] = sum of dz[r, j] over the rows r of
// chunk c = [c * rows_per_chunk, (c + 1) * rows_per_chunk).
//
// Block (bx, by): threadIdx.x picks a column of a tile of bx columns (consecutive threads read
// consecutive addresses), threadIdx.y strides over the rows of the chunk; then a fixed-order
// tree over threadIdx.y. Tiles and chunks are grid-strided over blockIdx.x and blockIdx.y, and
// each (tile, chunk) is summed by one block, so the result depends on (bx, by, rows_per_chunk)
// only, never on the grid. With a single chunk, `partial` is db itself and column_sum is
// skipped. y null means the linear activation (dz is dy); dz null means dz is not stored
// (the caller reads dy as dz), which saves a write pass for linear layers.
template <typename T>
__device__ void act_backward_bias_grad(const T* dy, const T* y, T* dz, T* partial, long long n,
                                       long long k, long long rows_per_chunk, int act,
                                       double alpha_d) {
    __shared__ T shared[NNB_MAX_BLOCK];
    const T alpha = (T)alpha_d;
    const unsigned tx = threadIdx.x, ty = threadIdx.y, bx = blockDim.x, by = blockDim.y;
    unsigned p = 1;
    while (p * 2 <= by) p *= 2;
    const long long tiles = (k + bx - 1) / bx;
    const long long chunks = (n + rows_per_chunk - 1) / rows_per_chunk;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const long long col = tile * bx + tx;
        for (long long chunk = blockIdx.y; chunk < chunks; chunk += gridDim.y) {
            long long row_end = (chunk + 1) * rows_per_chunk;
            if (row_end > n) row_end = n;
            T acc = T(0);
            if (col < k) {
                for (long long r = chunk * rows_per_chunk + ty; r < row_end; r += by) {
                    const long long i = r * k + col;
                    const T d = y ? nnb_activation_grad(dy[i], y[i], act, alpha) : dy[i];
                    if (dz) dz[i] = d;
                    acc += d;
                }
            }
            shared[ty * bx + tx] = acc;
            __syncthreads();
            if (ty + p < by) shared[ty * bx + tx] += shared[(ty + p) * bx + tx];
            __syncthreads();
            for (unsigned s = p / 2; s > 0; s >>= 1) {
                if (ty < s) shared[ty * bx + tx] += shared[(ty + s) * bx + tx];
                __syncthreads();
            }
            if (ty == 0 && col < k) partial[chunk * k + col] = shared[tx];
            __syncthreads();  // shared is rewritten by the next chunk
        }
    }
}

// out[j] = sum over c of partial[c, j], c in order: the second, fixed-order stage of the above.
template <typename T>
__device__ void column_sum(const T* partial, T* out, long long chunks, long long k) {
    for (long long col = nnb_first_index(); col < k; col += nnb_grid_stride()) {
        T acc = partial[col];
        for (long long c = 1; c < chunks; ++c) acc += partial[c * k + col];
        out[col] = acc;
    }
}

// ---- extern "C" entry points, one per dtype ------------------------------------------------
extern "C" __global__ void bias_act_forward_f32(const float* z, const float* b, float* y,
                                                long long n, long long k, int act, double alpha) {
    bias_act_forward<float>(z, b, y, n, k, act, alpha);
}
extern "C" __global__ void bias_act_forward_f64(const double* z, const double* b, double* y,
                                                long long n, long long k, int act, double alpha) {
    bias_act_forward<double>(z, b, y, n, k, act, alpha);
}
extern "C" __global__ void act_backward_f32(const float* dy, const float* y, float* dz,
                                            long long size, int act, double alpha) {
    act_backward<float>(dy, y, dz, size, act, alpha);
}
extern "C" __global__ void act_backward_f64(const double* dy, const double* y, double* dz,
                                            long long size, int act, double alpha) {
    act_backward<double>(dy, y, dz, size, act, alpha);
}
extern "C" __global__ void act_backward_bias_grad_f32(const float* dy, const float* y, float* dz,
                                                      float* partial, long long n, long long k,
                                                      long long rows_per_chunk, int act,
                                                      double alpha) {
    act_backward_bias_grad<float>(dy, y, dz, partial, n, k, rows_per_chunk, act, alpha);
}
extern "C" __global__ void act_backward_bias_grad_f64(const double* dy, const double* y,
                                                      double* dz, double* partial, long long n,
                                                      long long k, long long rows_per_chunk,
                                                      int act, double alpha) {
    act_backward_bias_grad<double>(dy, y, dz, partial, n, k, rows_per_chunk, act, alpha);
}
extern "C" __global__ void column_sum_f32(const float* partial, float* out, long long chunks,
                                          long long k) {
    column_sum<float>(partial, out, chunks, k);
}
extern "C" __global__ void column_sum_f64(const double* partial, double* out, long long chunks,
                                          long long k) {
    column_sum<double>(partial, out, chunks, k);
}
