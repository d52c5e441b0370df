// Fused residual dilated GRU stack (SPEC §3): framework-free API of the CPU
// scan (dilated_gru_cpu.cpp) and the CUDA kernels (dilated_gru_cuda.cu).
// No torch types: plain pointers, sizes and dense row-major layouts. The torch
// side (csrc/binding.cpp) does the checks, the GEMMs that are not part of the
// dependency chain, and the bookkeeping of saved tensors.
//
// Model. L layers, hidden size = input size = D, layer l reads its own hidden
// state from span_l = dilation^l steps back:
//   h^l_t = GRUCell_l(u^l_t, h^l_{t - span_l}),  u^{l+1}_t = lrelu((h^l_t + u^l_t)/sqrt2)
//   y_t = u^L_t (L > 1) or h^0_t (L = 1)
// Without feedback u^0_t = x_t. With feedback u^0_t = s_t + y_{t-1}, where
// s = lrelu(W_fb x + b_fb) (computed by the caller as a GEMM) and y_{-1} is 0
// after a reset, or the oldest stored hidden state of the last layer when a
// state was given (has_state; the published call-boundary rule).
// Gate order everywhere: r, z, n. Cell arithmetic: dilated_gru_cell.h.
//
// Shapes and layouts (all dense, row-major, last index fastest):
//   R      = sum_l (span_l + T): rows of the per-batch history buffer.
//   seg_l  = sum_{k<l} (span_k + T): first row of layer l's segment.
//   hist   [B, R, D]: layer l's segment holds span_l + T rows; row seg_l + i
//          is h^l_{i - span_l}, i.e. rows [0, span_l) are the incoming state
//          (oldest first; zeros after a reset) and row span_l + t is h^l_t.
//          The new state of layer l is rows [T, T + span_l) of its segment.
//   gi0    [B, T, 3D] float32: W_ih[0] u0_t + b_ih[0] for every step, where u0
//          is x (no feedback) or s (feedback; the recurrent part W_ih[0] y_{t-1}
//          is added inside the scan).
//   u0     [B, T, D] float32: x, or s with feedback.
//   w_ih_t, w_hh_t [L, D, 3D] float32: the weights transposed (forward reads
//          them column by column, so each output row is a contiguous run).
//   w_ih, w_hh     [L, 3D, D] float32: the weights as stored (backward).
//   b_ih, b_hh     [L, 3D] float32.
//   y      [B, T, D].
//   Backward-only (all float32):
//   gi, gh [L, B, T, 3D]: recomputed pre-activations (biases included) of every
//          layer and step; gi[0] includes the feedback part.
//   u      [L, B, T, D]: recomputed input of every layer (u[0] = u0 + feedback).
//   dy     [B, T, D]: gradient of y.
//   dhist  [B, R, D]: in: zeros except the rows of the new state, which hold
//          its gradient; out: the rows of the incoming state hold the state's
//          gradient; the other rows are undefined (the CPU and per-unit CUDA
//          kernels leave partial sums there, the grouped CUDA kernels leave
//          them untouched).
//   dgi, dgh [L, B, T, 3D]: out: gradients of gi, gh (for dW = dg^T u, db = sum).
//   du0    [B, T, D]: out: gradient of u^0 (= of x, or of s with feedback).
//
// Storage: hist and y are float32 or bfloat16 (Storage); everything else is
// float32, and all arithmetic is float32. The CPU also has a float64 variant
// (every buffer and all arithmetic double) for gradcheck-grade tests. In bf16 the forward rounds h and y
// to bf16 when it stores them and reads the rounded values back, so that the
// backward (which recomputes from the stored values) sees what the forward saw.
//
// Buffer lifetimes: nothing is retained between calls; the callee neither
// allocates nor frees. The forward's hist (and y for feedback) is what the
// backward needs, with gi, gh and u recomputed from it by the caller.
#pragma once

#include <stdint.h>

namespace s2v {
namespace dgru {

constexpr int kMaxLayers = 8;

enum class Storage : int { kFloat32 = 0, kBFloat16 = 1 };

struct Dims {
  int64_t B, T, D;
  int L;
  int64_t dilation;
  bool feedback;
  bool has_state;  // feedback only: y_{-1} = oldest stored h of the last layer
};

inline int64_t span(const Dims& d, int l) {
  int64_t s = 1;
  for (int i = 0; i < l; ++i) s *= d.dilation;
  return s;
}
inline int64_t seg_offset(const Dims& d, int l) {
  int64_t o = 0;
  for (int i = 0; i < l; ++i) o += span(d, i) + d.T;
  return o;
}
inline int64_t hist_rows(const Dims& d) { return seg_offset(d, d.L); }

// ---- CPU (dilated_gru_cpu.cpp): parallel over batch, and over hidden units
// when B is smaller than the thread count (OpenMP). ----
void forward_cpu(const Dims& d, Storage storage, const float* gi0, const float* u0,
                 const float* w_ih_t, const float* w_hh_t, const float* b_ih, const float* b_hh,
                 void* hist, void* y);

void backward_cpu(const Dims& d, const float* gi, const float* gh, const float* u,
                  const float* hist, const float* w_ih, const float* w_hh,
                  const float* dy, float* dhist, float* dgi, float* dgh, float* du0);

void forward_cpu(const Dims& d, const double* gi0, const double* u0, const double* w_ih_t,
                 const double* w_hh_t, const double* b_ih, const double* b_hh, double* hist,
                 double* y);

void backward_cpu(const Dims& d, const double* gi, const double* gh, const double* u,
                  const double* hist, const double* w_ih, const double* w_hh, const double* dy,
                  double* dhist, double* dgi, double* dgh, double* du0);

// ---- CUDA (dilated_gru_cuda.cu): one block per batch element, the whole
// stack in one launch (wavefront over layers); return 0 or a cudaError_t value.
// `stream` is a cudaStream_t. Pointers are device pointers with the layouts
// above; `hist`'s state rows must be filled and `dhist` prepared as described.
int forward_cuda(const Dims& d, Storage storage, const float* gi0, const float* u0,
                 const float* w_ih_t, const float* w_hh_t, const float* b_ih, const float* b_hh,
                 void* hist, void* y, void* stream);

int backward_cuda(const Dims& d, const float* gi, const float* gh, const float* u,
                  const float* hist, const float* w_ih, const float* w_hh,
                  const float* dy, float* dhist, float* dgi, float* dgh, float* du0,
                  void* stream);

const char* cuda_error_string(int code);

}  // namespace dgru
}  // namespace s2v
