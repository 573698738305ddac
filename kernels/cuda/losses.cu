// losses.cu: softmax, softmax + cross-entropy, and the element-wise losses with their gradients.
//
// Reference ops (nnback/backends/base.py):
//   bias_softmax_forward  Backend.dense_forward(..., "softmax") after the GEMM (z += b, then
//                         Backend.softmax); Backend.softmax alone when b is null.
//   softmax_backward      Backend.activation_backward(dy, y, "softmax").
//   softmax_xent_labels   Backend.softmax_crossentropy with integer labels (n,): per-row loss
//                         log(sum(exp(z - max))) - (z[label] - max), grad (softmax - onehot) / n.
//   softmax_xent_onehot   the same with one-hot rows (n, k): per-row sum of y * (shifted - log_total).
//   bce_loss_grad         Backend.binary_crossentropy: per-chunk sums of the loss terms and grad,
//                         with the complement clipped (see the kernel).
//   mse_loss_grad         Backend.mean_squared_error.
//   mae_loss_grad         Backend.mean_absolute_error.
//   finalize_mean         the final sum of the per-row / per-chunk values, negated if asked,
//                         divided by n (or n * k): the loss as a 0-d array.
// Row kernels run one block per row (grid-stride over rows); chunk kernels one block per chunk
// of a fixed number of elements. finalize_mean runs as a single block. So no result depends
// on the number of blocks.
#include "common.cuh"

// y = softmax(z + b) row by row, stable: exp(v - max(v)) / sum(exp(v - max(v))). y may be z.
template <typename T>
__device__ void bias_softmax_forward(const T* z, const T* b, T* y, long long n, long long k) {
    __shared__ T shared[NNB_MAX_BLOCK];
    for (long long r = blockIdx.x; r < n; r += gridDim.x) {
        const T* zr = z + r * k;
        T* yr = y + r * k;
        T m = nnb_neg_inf<T>();
        for (long long j = threadIdx.x; j < k; j += blockDim.x) {
            T v = zr[j];
            if (b) v = v + b[j];
            yr[j] = v;  // each thread re-reads only the elements it wrote: no barrier needed
            m = nnb_max_nan(m, v);
        }
        m = nnb_block_max(m, shared);
        T s = T(0);
        for (long long j = threadIdx.x; j < k; j += blockDim.x) {
            const T e = nnb_exp(yr[j] - m);
            yr[j] = e;
            s += e;
        }
        s = nnb_block_sum(s, shared);
        for (long long j = threadIdx.x; j < k; j += blockDim.x) yr[j] = yr[j] / s;
    }
}

// dz = y * (dy - sum(dy * y)) row by row (the softmax Jacobian-vector product); dz may be dy.
template <typename T>
__device__ void softmax_backward(const T* dy, const T* y, T* dz, long long n, long long k) {
    __shared__ T shared[NNB_MAX_BLOCK];
    for (long long r = blockIdx.x; r < n; r += gridDim.x) {
        const long long o = r * k;
        T s = T(0);
        for (long long j = threadIdx.x; j < k; j += blockDim.x) s += dy[o + j] * y[o + j];
        s = nnb_block_sum(s, shared);
        for (long long j = threadIdx.x; j < k; j += blockDim.x) dz[o + j] = y[o + j] * (dy[o + j] - s);
    }
}

// The first two passes shared by both cross-entropy kernels, for row `zr`: returns the row max
// in *m and the sum of exp(z - max) in *total, storing exp(z - max) in gr when it is not null.
template <typename T>
__device__ void nnb_row_exp_sum(const T* zr, T* gr, long long k, T* shared, T* m, T* total) {
    T mx = nnb_neg_inf<T>();
    for (long long j = threadIdx.x; j < k; j += blockDim.x) mx = nnb_max_nan(mx, zr[j]);
    mx = nnb_block_max(mx, shared);
    T s = T(0);
    for (long long j = threadIdx.x; j < k; j += blockDim.x) {
        const T e = nnb_exp(zr[j] - mx);
        if (gr) gr[j] = e;
        s += e;
    }
    *m = mx;
    *total = nnb_block_sum(s, shared);
}

// Integer labels, negative ones counting from the end as NumPy indexing does; a label outside
// [-k, k) (an IndexError in NumPy) gives a NaN loss and a NaN gradient row instead, since a
// kernel cannot raise. grad may be null (with_grad=False).
template <typename T, typename L>
__device__ void softmax_xent_labels(const T* logits, const L* labels, T* grad, T* row_loss,
                                    long long n, long long k) {
    __shared__ T shared[NNB_MAX_BLOCK];
    const T tn = (T)n;
    for (long long r = blockIdx.x; r < n; r += gridDim.x) {
        const T* zr = logits + r * k;
        T* gr = grad ? grad + r * k : nullptr;
        T m, total;
        nnb_row_exp_sum(zr, gr, k, shared, &m, &total);
        long long label = (long long)labels[r];
        if (label < 0) label += k;
        const bool valid = label >= 0 && label < k;
        if (threadIdx.x == 0) {
            row_loss[r] = valid ? nnb_log(total) - (zr[label] - m) : nnb_nan<T>();
        }
        if (gr) {
            for (long long j = threadIdx.x; j < k; j += blockDim.x) {
                T g = gr[j] / total;
                if (j == label) g = g - T(1);
                gr[j] = valid ? g / tn : nnb_nan<T>();
            }
        }
    }
}

// One-hot (or any probability) rows y_true (n, k) of the logits' dtype.
template <typename T>
__device__ void softmax_xent_onehot(const T* logits, const T* y_true, T* grad, T* row_loss,
                                    long long n, long long k) {
    __shared__ T shared[NNB_MAX_BLOCK];
    const T tn = (T)n;
    for (long long r = blockIdx.x; r < n; r += gridDim.x) {
        const T* zr = logits + r * k;
        const T* yr = y_true + r * k;
        T* gr = grad ? grad + r * k : nullptr;
        T m, total;
        nnb_row_exp_sum(zr, gr, k, shared, &m, &total);
        const T log_total = nnb_log(total);
        T s = T(0);
        for (long long j = threadIdx.x; j < k; j += blockDim.x) {
            s += yr[j] * ((zr[j] - m) - log_total);
            if (gr) gr[j] = (gr[j] / total - yr[j]) / tn;
        }
        s = nnb_block_sum(s, shared);
        if (threadIdx.x == 0) row_loss[r] = s;  // negated by finalize_mean
    }
}

// Binary cross-entropy: sum over chunk c of y log(p) + (1 - y) log(q) with p = clip(pred) and
// q = clip(1 - pred) to [lo, hi]; grad = -(y / p - (1 - y) / q) / count, count = n * k.
// Clipping the complement rather than taking 1 - clip(pred) (as base.py does) is how the
// accelerated backends meet the float64 definition in float32: there hi = 1 - 1e-7 rounds to
// 1 - 2**-23, so 1 - clip(pred) of a saturated wrong prediction is 1.19e-7, not 1e-7 (19% off
// in the gradient), while 1 - pred is exact for pred >= 1/2 and then clipped to 1e-7 itself.
// The Numba backend does the same, and the parity tests check that case.
template <typename T>
__device__ void bce_loss_grad(const T* pred, const T* target, T* grad, T* partial, long long size,
                              long long chunk, double lo_d, double hi_d, double count_d) {
    __shared__ T shared[NNB_MAX_BLOCK];
    const T lo = (T)lo_d, hi = (T)hi_d, count = (T)count_d;
    const long long chunks = (size + chunk - 1) / chunk;
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {
        const long long end = (c + 1) * chunk < size ? (c + 1) * chunk : size;
        T acc = T(0);
        for (long long i = c * chunk + threadIdx.x; i < end; i += blockDim.x) {
            const T x = pred[i], y = target[i];
            const T p = nnb_clip(x, lo, hi), q = nnb_clip(T(1) - x, lo, hi);
            acc += y * nnb_log(p) + (T(1) - y) * nnb_log(q);
            if (grad) grad[i] = -(y / p - (T(1) - y) / q) / count;
        }
        acc = nnb_block_sum(acc, shared);
        if (threadIdx.x == 0) partial[c] = acc;
    }
}

// Mean squared error: chunk sums of d * d, d = pred - target; grad = d * grad_scale, where
// grad_scale = 2 / (n * k) is computed in Python as the reference does.
template <typename T>
__device__ void mse_loss_grad(const T* pred, const T* target, T* grad, T* partial, long long size,
                              long long chunk, double grad_scale_d) {
    __shared__ T shared[NNB_MAX_BLOCK];
    const T grad_scale = (T)grad_scale_d;
    const long long chunks = (size + chunk - 1) / chunk;
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {
        const long long end = (c + 1) * chunk < size ? (c + 1) * chunk : size;
        T acc = T(0);
        for (long long i = c * chunk + threadIdx.x; i < end; i += blockDim.x) {
            const T d = pred[i] - target[i];
            acc += d * d;
            if (grad) grad[i] = d * grad_scale;
        }
        acc = nnb_block_sum(acc, shared);
        if (threadIdx.x == 0) partial[c] = acc;
    }
}

// Mean absolute error: chunk sums of |d|; grad = sign(d) / count (0 where pred == target).
template <typename T>
__device__ void mae_loss_grad(const T* pred, const T* target, T* grad, T* partial, long long size,
                              long long chunk, double count_d) {
    __shared__ T shared[NNB_MAX_BLOCK];
    const T count = (T)count_d;
    const long long chunks = (size + chunk - 1) / chunk;
    for (long long c = blockIdx.x; c < chunks; c += gridDim.x) {
        const long long end = (c + 1) * chunk < size ? (c + 1) * chunk : size;
        T acc = T(0);
        for (long long i = c * chunk + threadIdx.x; i < end; i += blockDim.x) {
            const T d = pred[i] - target[i];
            acc += nnb_abs(d);
            if (grad) grad[i] = nnb_sign(d) / count;
        }
        acc = nnb_block_sum(acc, shared);
        if (threadIdx.x == 0) partial[c] = acc;
    }
}

// out[0] = (negate ? -1 : 1) * sum(values) / divisor, summed by block 0 alone in a fixed order
// (launch it with one block; any other block returns at once).
template <typename T>
__device__ void finalize_mean(const T* values, long long count, T* out, double divisor, int negate) {
    __shared__ T shared[NNB_MAX_BLOCK];
    if (blockIdx.x != 0 || blockIdx.y != 0) return;
    T acc = T(0);
    for (long long i = threadIdx.x; i < count; i += blockDim.x) acc += values[i];
    T total = nnb_block_sum(acc, shared);
    if (threadIdx.x == 0) {
        if (negate) total = -total;
        out[0] = total / (T)divisor;
    }
}

// ---- extern "C" entry points, one per dtype (and label type) --------------------------------
extern "C" __global__ void bias_softmax_forward_f32(const float* z, const float* b, float* y,
                                                    long long n, long long k) {
    bias_softmax_forward<float>(z, b, y, n, k);
}
extern "C" __global__ void bias_softmax_forward_f64(const double* z, const double* b, double* y,
                                                    long long n, long long k) {
    bias_softmax_forward<double>(z, b, y, n, k);
}
extern "C" __global__ void softmax_backward_f32(const float* dy, const float* y, float* dz,
                                                long long n, long long k) {
    softmax_backward<float>(dy, y, dz, n, k);
}
extern "C" __global__ void softmax_backward_f64(const double* dy, const double* y, double* dz,
                                                long long n, long long k) {
    softmax_backward<double>(dy, y, dz, n, k);
}
extern "C" __global__ void softmax_xent_labels_f32_i32(const float* logits, const int* labels,
                                                       float* grad, float* row_loss, long long n,
                                                       long long k) {
    softmax_xent_labels<float, int>(logits, labels, grad, row_loss, n, k);
}
extern "C" __global__ void softmax_xent_labels_f32_i64(const float* logits,
                                                       const long long* labels, float* grad,
                                                       float* row_loss, long long n, long long k) {
    softmax_xent_labels<float, long long>(logits, labels, grad, row_loss, n, k);
}
extern "C" __global__ void softmax_xent_labels_f64_i32(const double* logits, const int* labels,
                                                       double* grad, double* row_loss,
                                                       long long n, long long k) {
    softmax_xent_labels<double, int>(logits, labels, grad, row_loss, n, k);
}
extern "C" __global__ void softmax_xent_labels_f64_i64(const double* logits,
                                                       const long long* labels, double* grad,
                                                       double* row_loss, long long n,
                                                       long long k) {
    softmax_xent_labels<double, long long>(logits, labels, grad, row_loss, n, k);
}
extern "C" __global__ void softmax_xent_onehot_f32(const float* logits, const float* y_true,
                                                   float* grad, float* row_loss, long long n,
                                                   long long k) {
    softmax_xent_onehot<float>(logits, y_true, grad, row_loss, n, k);
}
extern "C" __global__ void softmax_xent_onehot_f64(const double* logits, const double* y_true,
                                                   double* grad, double* row_loss, long long n,
                                                   long long k) {
    softmax_xent_onehot<double>(logits, y_true, grad, row_loss, n, k);
}
extern "C" __global__ void bce_loss_grad_f32(const float* pred, const float* target, float* grad,
                                             float* partial, long long size, long long chunk,
                                             double lo, double hi, double count) {
    bce_loss_grad<float>(pred, target, grad, partial, size, chunk, lo, hi, count);
}
extern "C" __global__ void bce_loss_grad_f64(const double* pred, const double* target,
                                             double* grad, double* partial, long long size,
                                             long long chunk, double lo, double hi,
                                             double count) {
    bce_loss_grad<double>(pred, target, grad, partial, size, chunk, lo, hi, count);
}
extern "C" __global__ void mse_loss_grad_f32(const float* pred, const float* target, float* grad,
                                             float* partial, long long size, long long chunk,
                                             double grad_scale) {
    mse_loss_grad<float>(pred, target, grad, partial, size, chunk, grad_scale);
}
extern "C" __global__ void mse_loss_grad_f64(const double* pred, const double* target,
                                             double* grad, double* partial, long long size,
                                             long long chunk, double grad_scale) {
    mse_loss_grad<double>(pred, target, grad, partial, size, chunk, grad_scale);
}
extern "C" __global__ void mae_loss_grad_f32(const float* pred, const float* target, float* grad,
                                             float* partial, long long size, long long chunk,
                                             double count) {
    mae_loss_grad<float>(pred, target, grad, partial, size, chunk, count);
}
extern "C" __global__ void mae_loss_grad_f64(const double* pred, const double* target,
                                             double* grad, double* partial, long long size,
                                             long long chunk, double count) {
    mae_loss_grad<double>(pred, target, grad, partial, size, chunk, count);
}
extern "C" __global__ void finalize_mean_f32(const float* values, long long count, float* out,
                                             double divisor, int negate) {
    finalize_mean<float>(values, count, out, divisor, negate);
}
extern "C" __global__ void finalize_mean_f64(const double* values, long long count, double* out,
                                             double divisor, int negate) {
    finalize_mean<double>(values, count, out, divisor, negate);
}
