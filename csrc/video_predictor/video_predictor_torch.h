// Tensor-level entry points of the video predictor's CPU kernels: argument
// checks (device, dtype, contiguity, shapes) and the dtype dispatch around the
// framework-free functions of video_predictor.h. Bound in csrc/binding.cpp.
//
// Tensors must be CPU, contiguous and of one dtype: float32 or float64 run
// natively; bfloat16 and float16 are computed in float32 (inputs widened,
// results rounded once at the end). Absent weights are empty tensors.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace s2v {
namespace video_predictor {

// The layer (contract in video_predictor.h): directional when w_h is not
// empty, basic otherwise. Returns {y [B,T,C,H,W], h_seq [F,B,T,Ch,H,W],
// saved}: with save_gates (and a float32/float64 input) saved holds the gates
// for the backward ([F,T,3,B·H·W·Ch], see forward_cpu), so that it skips
// recomputing them; otherwise saved is empty.
std::vector<at::Tensor> forward(const at::Tensor& x, const at::Tensor& xh, const at::Tensor& h0,
                                const at::Tensor& w_sq, const at::Tensor& b_sq,
                                const at::Tensor& w_h, const at::Tensor& b_h,
                                const at::Tensor& w_w, const at::Tensor& b_w,
                                const at::Tensor& blend_w, const at::Tensor& blend_b,
                                bool save_gates);

// dh_last [F,B,Ch,H,W] and dh_seq [F,B,T,Ch,H,W] may each be empty (no
// gradient); saved is forward's third output (empty: gates recomputed). Returns {dx, dxh, dh0, dw_sq, db_sq, dw_h, db_h, dw_w, db_w,
// dblend_w, dblend_b} (empty tensors for absent weights).
std::vector<at::Tensor> backward(const at::Tensor& dy, const at::Tensor& dh_last,
                                 const at::Tensor& dh_seq, const at::Tensor& x,
                                 const at::Tensor& xh, const at::Tensor& h0,
                                 const at::Tensor& h_seq, const at::Tensor& w_sq,
                                 const at::Tensor& b_sq, const at::Tensor& w_h,
                                 const at::Tensor& b_h, const at::Tensor& w_w,
                                 const at::Tensor& b_w, const at::Tensor& blend_w,
                                 const at::Tensor& blend_b, const at::Tensor& saved);

// One cell over a sequence (the dirconv_gru op): x [B,T,C,H,W], h0 [B,Ch,H,W],
// weight [3,Ch,C+Ch,k,k] (orientation 0) or [3,Ch,C+Ch,taps] (1 = 'h', 2 =
// 'w'), bias [3,Ch], direction ±1. Returns h_seq [B,T,Ch,H,W].
at::Tensor cell_forward(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& weight,
                        const at::Tensor& bias, int64_t orientation, int64_t direction);

// dh_seq [B,T,Ch,H,W]; returns {dx, dh0, dweight, dbias}.
std::vector<at::Tensor> cell_backward(const at::Tensor& dh_seq, const at::Tensor& x,
                                      const at::Tensor& h0, const at::Tensor& h_seq,
                                      const at::Tensor& weight, const at::Tensor& bias,
                                      int64_t orientation, int64_t direction);

}  // namespace video_predictor
}  // namespace s2v
