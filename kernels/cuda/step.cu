// step.cu: the device's own books for a planned (and captured) training step.
//
// A captured step is one CUDA graph replayed once per minibatch, so nothing in it may depend
// on a value the host passes per step. What changes from step to step lives in device
// memory instead, in one int64 array `state` and one float64 array `sums`:
//   state[0]  cursor: the index of the step within the epoch (advanced by step_advance);
//   state[1]  flag: 1 once a loss was not finite (the optimizer kernels then skip);
//   state[2]  the cursor of the step whose loss was not finite;
//   state[3]  the number of correct predictions so far (Metric.update's running count).
//   sums[0]   the sum over steps of loss * batch size (training.py's loss_sum, in double);
//   sums[1]   the loss of the last step, as a double (for per-batch callbacks);
//   sums[2]   the first loss that was not finite (for the error message).
// Reference ops: the eager loop of nnback/training.py (_Trainer.epoch) and Backend.count_*,
// which these kernels must reproduce:
//   gather_rows        xb, yb = X[order[start:start + n]], y[order[start:start + n]]
//   step_books         loss_value = float(loss); stop if not finite; loss_sum += loss_value * n
//   count_argmax_*     Backend.count_correct with several columns (first maximum wins)
//   count_threshold    Backend.count_correct with one column: (p > 0.5) == (t > 0.5)
//   count_within       Backend.count_within: |p - t| < tolerance, the tolerance rounded to T
//   score_books        training.py's _score: total = total + loss * n, in the loss's dtype T
//   step_advance       the loop's next iteration
// The count kernels run as one block, summing in a fixed order; integers are exact anyway.
#include "common.cuh"

// out[i, :] = src[order[cursor * stride + i], :] for the n rows of a (rows, k) row-major source
// (stride: the rows of a full-size step; n < stride for the epoch's shorter last batch).
template <typename T>
__device__ void gather_rows(const T* src, const long long* order, const long long* state, T* out,
                            long long n, long long k, long long stride) {
    const long long base = state[0] * stride;
    const long long size = n * k;
    for (long long i = nnb_first_index(); i < size; i += nnb_grid_stride()) {
        const long long r = i / k;
        out[i] = src[order[base + r] * k + (i - r * k)];
    }
}

// The loss of the step (0-d, of T) into the books; a non-finite one raises the flag instead.
template <typename T>
__device__ void step_books(const T* loss, long long n, long long* state, double* sums) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    const double value = (double)loss[0];
    sums[1] = value;
    if (state[1] != 0) return;
    if (!(value - value == 0.0)) {  // NaN or an infinity (inf - inf is NaN)
        state[1] = 1;
        state[2] = state[0];
        sums[2] = value;
        return;
    }
    sums[0] = sums[0] + value * (double)n;
}

// The evaluation loop's running total, in T as the eager loop computes it on the device.
template <typename T> __device__ void score_books(const T* loss, long long n, T* total) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    const T scaled = loss[0] * (T)n;
    total[0] = total[0] + scaled;
}

__device__ __forceinline__ void nnb_add_count(long long count, long long* state) {
    __shared__ long long shared[NNB_MAX_BLOCK];
    const long long total = nnb_block_sum(count, shared);
    if (threadIdx.x == 0 && state[1] == 0) state[3] = state[3] + total;
}

// The first index of the largest value of row r (numpy.argmax: the first NaN, if any, wins).
template <typename T> __device__ long long nnb_row_argmax(const T* row, long long k) {
    long long best = 0;
    T top = row[0];
    if (top != top) return 0;
    for (long long j = 1; j < k; ++j) {
        const T v = row[j];
        if (v != v) return j;
        if (v > top) {
            top = v;
            best = j;
        }
    }
    return best;
}

template <typename T>
__device__ void count_argmax_labels(const T* pred, const long long* labels, long long n,
                                    long long k, long long* state) {
    if (blockIdx.x != 0) return;
    long long count = 0;
    for (long long r = threadIdx.x; r < n; r += blockDim.x) {
        count += nnb_row_argmax(pred + r * k, k) == labels[r] ? 1 : 0;
    }
    nnb_add_count(count, state);
}

template <typename T>
__device__ void count_argmax_onehot(const T* pred, const T* truth, long long n, long long k,
                                    long long* state) {
    if (blockIdx.x != 0) return;
    long long count = 0;
    for (long long r = threadIdx.x; r < n; r += blockDim.x) {
        count += nnb_row_argmax(pred + r * k, k) == nnb_row_argmax(truth + r * k, k) ? 1 : 0;
    }
    nnb_add_count(count, state);
}

template <typename T>
__device__ void count_threshold(const T* pred, const T* truth, long long n, long long* state) {
    if (blockIdx.x != 0) return;
    long long count = 0;
    for (long long r = threadIdx.x; r < n; r += blockDim.x) {
        count += (pred[r] > T(0.5)) == (truth[r] > T(0.5)) ? 1 : 0;
    }
    nnb_add_count(count, state);
}

template <typename T>
__device__ void count_within(const T* pred, const T* truth, long long size, double tolerance_d,
                             long long* state) {
    if (blockIdx.x != 0) return;
    const T tolerance = (T)tolerance_d;
    long long count = 0;
    for (long long i = threadIdx.x; i < size; i += blockDim.x) {
        count += nnb_abs(pred[i] - truth[i]) < tolerance ? 1 : 0;
    }
    nnb_add_count(count, state);
}

// ---- extern "C" entry points ---------------------------------------------------------------
extern "C" __global__ void gather_rows_f32(const float* src, const long long* order,
                                           const long long* state, float* out, long long n,
                                           long long k, long long stride) {
    gather_rows<float>(src, order, state, out, n, k, stride);
}
extern "C" __global__ void gather_rows_f64(const double* src, const long long* order,
                                           const long long* state, double* out, long long n,
                                           long long k, long long stride) {
    gather_rows<double>(src, order, state, out, n, k, stride);
}
extern "C" __global__ void gather_rows_i64(const long long* src, const long long* order,
                                           const long long* state, long long* out, long long n,
                                           long long k, long long stride) {
    gather_rows<long long>(src, order, state, out, n, k, stride);
}
extern "C" __global__ void step_books_f32(const float* loss, long long n, long long* state,
                                          double* sums) {
    step_books<float>(loss, n, state, sums);
}
extern "C" __global__ void step_books_f64(const double* loss, long long n, long long* state,
                                          double* sums) {
    step_books<double>(loss, n, state, sums);
}
extern "C" __global__ void score_books_f32(const float* loss, long long n, float* total) {
    score_books<float>(loss, n, total);
}
extern "C" __global__ void score_books_f64(const double* loss, long long n, double* total) {
    score_books<double>(loss, n, total);
}
extern "C" __global__ void step_advance(long long* state) {
    if (blockIdx.x == 0 && threadIdx.x == 0) state[0] = state[0] + 1;
}
extern "C" __global__ void count_argmax_labels_f32(const float* pred, const long long* labels,
                                                   long long n, long long k, long long* state) {
    count_argmax_labels<float>(pred, labels, n, k, state);
}
extern "C" __global__ void count_argmax_labels_f64(const double* pred, const long long* labels,
                                                   long long n, long long k, long long* state) {
    count_argmax_labels<double>(pred, labels, n, k, state);
}
extern "C" __global__ void count_argmax_onehot_f32(const float* pred, const float* truth,
                                                   long long n, long long k, long long* state) {
    count_argmax_onehot<float>(pred, truth, n, k, state);
}
extern "C" __global__ void count_argmax_onehot_f64(const double* pred, const double* truth,
                                                   long long n, long long k, long long* state) {
    count_argmax_onehot<double>(pred, truth, n, k, state);
}
extern "C" __global__ void count_threshold_f32(const float* pred, const float* truth, long long n,
                                               long long* state) {
    count_threshold<float>(pred, truth, n, state);
}
extern "C" __global__ void count_threshold_f64(const double* pred, const double* truth,
                                               long long n, long long* state) {
    count_threshold<double>(pred, truth, n, state);
}
extern "C" __global__ void count_within_f32(const float* pred, const float* truth, long long size,
                                            double tolerance, long long* state) {
    count_within<float>(pred, truth, size, tolerance, state);
}
extern "C" __global__ void count_within_f64(const double* pred, const double* truth,
                                            long long size, double tolerance, long long* state) {
    count_within<double>(pred, truth, size, tolerance, state);
}
