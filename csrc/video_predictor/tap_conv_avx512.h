// Tap convolutions on pixel-major operands as one fused register-blocked loop
// instead of one GEMM per tap.
//
// A tap convolution over a flattened image adds, for every tap i, the operand
// read at offset (dy_i, dx_i) times that tap's weight block. Run as one
// library GEMM per tap, each call packs its shifted operand again (MKL's
// packing was ~10 % of the video predictor's forward+backward), reads and
// writes the output once per tap, and reads wrong rows near the frame's edges
// that the caller must recompute. Here a tile of output rows stays in vector
// registers across all taps and input channels and is written once; each
// output pixel reads each tap's source row through its own pointer, so the
// frame's edges (zeros or replicated rows/columns) cost nothing extra.
#pragma once

#include <cstdint>

namespace s2v {
namespace video_predictor {

// Whether the functions below run on this CPU (they need AVX-512F); where
// they do not they return false and leave their outputs alone, and the caller
// uses its GEMM path.
bool tap_conv_avx512_available();

// Where tap i of output pixel n reads: pixel n = (b·H + y)·W + x of a
// row-major operand with lda floats per pixel.
struct TapFrame {
  int64_t H, W;
  // true: the source pixel (y + dy_i, x + dx_i), clamped to the frame on an
  // axis with clamp_* (replicate padding) or a row of zeros where it leaves the
  // frame on the other axes (zero padding). false: the plain row shift
  // n + dy_i·W + dx_i, right only away from the edges (the caller recomputes
  // the pixels within reach of an edge, and the operand has margin rows).
  bool exact;
  bool clamp_rows, clamp_cols;
};

// out[n·ldo + o] = init[n, o] + Σ_i Σ_k src_i(n)[k] · w[(i·kc + k)·ldw + o]
// for pixels 0 ≤ n < N and columns 0 ≤ o < O, src_i(n) as TapFrame says (n
// relative to `a`), init being out itself (accumulate), bias[o] (bias not
// null) or 0. float32, any N, kc, O ≥ 1, ntaps ≤ 64. Parallel over pixel
// blocks (at::parallel_for); every output sums in a fixed order whatever the
// thread split.
bool tap_conv_f32(int64_t N, int64_t kc, int64_t O, const TapFrame& f, const int* dy,
                  const int* dx, int ntaps, const float* a, int64_t lda, const float* w,
                  int64_t ldw, const float* bias, float* out, int64_t ldo, bool accumulate);

// The weight gradient of the same products:
// dw[(i·kc + k)·ldw + o] += Σ_{0 ≤ n < N} src_i(n)[k] · g[n·ldg + o].
// Same conditions; also deterministic whatever the thread split.
bool tap_conv_wgrad_f32(int64_t N, int64_t kc, int64_t O, const TapFrame& f, const int* dy,
                        const int* dx, int ntaps, const float* a, int64_t lda, const float* g,
                        int64_t ldg, float* dw, int64_t ldw);

}  // namespace video_predictor
}  // namespace s2v
