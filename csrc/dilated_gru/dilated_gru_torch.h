// Torch-facing entry points of the fused dilated GRU stack, bound in
// csrc/binding.cpp. They check arguments, run the GEMMs that are not on the
// dependency chain with ATen, and call the framework-free scans of
// dilated_gru.h on CPU or (built with S2V_WITH_CUDA) CUDA tensors.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <vector>

namespace s2v {
namespace dgru {

// x [B, T, D]; state [B, S, D] with S = sum_l dilation^l (the per-layer states
// concatenated along dim 1, oldest first; zeros after a reset); weights as in
// s2v/ops/dilated_gru.py; has_state: whether `state` came from a previous call
// (only matters for feedback). All float32 or all bfloat16, contiguous, same device.
// Returns {y [B, T, D], hist [B, R, D] (dilated_gru.h; saved for backward),
// new_state [B, S, D]}, all of x's dtype.
std::vector<at::Tensor> forward(const at::Tensor& x, const at::Tensor& state,
                                const at::Tensor& w_ih, const at::Tensor& w_hh,
                                const at::Tensor& b_ih, const at::Tensor& b_hh, int64_t dilation,
                                const std::optional<at::Tensor>& fb_w,
                                const std::optional<at::Tensor>& fb_b, bool has_state);

// Gradients of forward() given dy [B, T, D] and dnew_state [B, S, D] and the
// forward's x, y and hist. Returns {dx, dstate, dw_ih, dw_hh, db_ih, db_hh,
// dfb_w, dfb_b} (the last two empty without feedback), of x's dtype.
std::vector<at::Tensor> backward(const at::Tensor& dy, const at::Tensor& dnew_state,
                                 const at::Tensor& x, const at::Tensor& y,
                                 const at::Tensor& hist, const at::Tensor& w_ih,
                                 const at::Tensor& w_hh, const at::Tensor& b_ih,
                                 const at::Tensor& b_hh, int64_t dilation,
                                 const std::optional<at::Tensor>& fb_w,
                                 const std::optional<at::Tensor>& fb_b, bool has_state);

}  // namespace dgru
}  // namespace s2v
