// The interior of a tap convolution on pixel-major operands, as one fused
// register-blocked loop instead of one GEMM per tap.
//
// A tap convolution over a flattened image adds, for every tap i, the
// operand shifted by off[i] rows times that tap's weight block. Run as one
// library GEMM per tap, each call packs its shifted operand again (MKL's
// packing was ~10 % of the video predictor's forward+backward) and reads and
// writes the output once per tap. Here a tile of output rows stays in vector
// registers across all taps and all input channels and is written once; the
// operand is read in place (no packing), the weights stream from cache.
#pragma once

#include <cstdint>

namespace s2v {
namespace video_predictor {

// Whether shifted_tap_gemm runs on this CPU (it needs AVX-512F).
bool shifted_tap_gemm_available();

// out[r·ldo + o] = init[r, o] + Σ_i Σ_k a[(r + off[i])·lda + k] · w[(i·kc + k)·ldw + o]
// for rows 0 ≤ r < n and columns 0 ≤ o < O, where init is out itself
// (accumulate), bias[o] (bias not null) or 0. float32, row-major, any n, kc,
// O ≥ 1; a may be read at rows r + off[i] < 0 (the caller's margin rows).
// Parallel over row blocks (at::parallel_for). Returns false without touching
// out when the CPU cannot run it; the caller then uses its GEMM path.
bool shifted_tap_gemm(int64_t n, int64_t kc, int64_t O, const int64_t* off, int ntaps,
                      const float* a, int64_t lda, const float* w, int64_t ldw,
                      const float* bias, float* out, int64_t ldo, bool accumulate);

// The weight gradient of the same products:
// dw[(i·kc + k)·ldw + o] += Σ_{0 ≤ r < n} a[(r + off[i])·lda + k] · g[r·ldg + o]
// for taps i, 0 ≤ k < kc, 0 ≤ o < O. Same conditions and return value.
bool shifted_tap_wgrad(int64_t n, int64_t kc, int64_t O, const int64_t* off, int ntaps,
                       const float* a, int64_t lda, const float* g, int64_t ldg, float* dw,
                       int64_t ldw);

}  // namespace video_predictor
}  // namespace s2v
