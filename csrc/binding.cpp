// The one Python binding of the compiled extension s2v._C.
//
// Every op implemented in csrc/ (C++ CPU kernels in csrc/**/*.cpp, CUDA
// kernels in csrc/**/*.cu) is exposed to Python from this file and nowhere
// else, so there is exactly one PYBIND11_MODULE and one place to look for
// what the extension offers. Keep it thin: argument checking and dispatch
// live next to the kernels, this file only declares and binds them.

#include <torch/extension.h>
#include <torch/version.h>

#include <string>

// Written by setup.py at build time; the arch list can contain characters
// (';', '+') that do not survive being passed as a -D flag through every
// build path, so it travels in a header instead.
#include "s2v_build_config.h"

// ---- dilated_gru (begin) ----
#include "dilated_gru/dilated_gru_torch.h"
// ---- dilated_gru (end) ----

// ---- video_predictor (begin) ----
#include "video_predictor/tap_conv_avx512.h"
#include "video_predictor/video_predictor_torch.h"
// ---- video_predictor (end) ----

// ---- poison (begin) ----
#include "poison.h"
// ---- poison (end) ----

namespace s2v {
namespace {

#define S2V_STRINGIFY_(x) #x
#define S2V_STRINGIFY(x) S2V_STRINGIFY_(x)

// Compared at load time by s2v/_extension.py against the running torch: the
// C++ ABI of torch is not stable across minor versions.
constexpr const char* kTorchVersion =
    S2V_STRINGIFY(TORCH_VERSION_MAJOR) "." S2V_STRINGIFY(TORCH_VERSION_MINOR) "." S2V_STRINGIFY(
        TORCH_VERSION_PATCH);

pybind11::dict build_info() {
  pybind11::dict info;
#ifdef S2V_WITH_CUDA
  info["with_cuda"] = true;
  info["cuda_archs"] = std::string(S2V_CUDA_ARCHS);
#else
  info["with_cuda"] = false;
  info["cuda_archs"] = std::string();
#endif
#ifdef _OPENMP
  info["with_openmp"] = true;
#else
  info["with_openmp"] = false;
#endif
  info["torch_version"] = std::string(kTorchVersion);
  // Whether the video predictor's CPU kernels run their taps through the
  // AVX-512 register-blocked loops (else one library GEMM per tap).
  info["cpu_fused_taps"] = video_predictor::tap_conv_avx512_available();
  return info;
}

}  // namespace
}  // namespace s2v

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "s2v compiled kernels (C++ CPU and, when built with CUDA, CUDA)";

  m.def("build_info", &s2v::build_info,
        "How this extension was compiled: with_cuda, with_openmp, torch_version, cuda_archs.");

  // ---------------------------------------------------------------------
  // Op registrations go below. Declare each op's entry point in a header
  // next to its kernels (e.g. csrc/cpu/<op>.h), include it above, and bind it
  // here. CUDA entry points must be wrapped in `#ifdef S2V_WITH_CUDA` so the
  // CPU-only build still links.
  // ---------------------------------------------------------------------

  // ---- dilated_gru (begin) ----
  // CPU and (built with S2V_WITH_CUDA) CUDA tensors; the device dispatch and the
  // CUDA launches sit in csrc/dilated_gru/dilated_gru_torch.cpp behind S2V_WITH_CUDA.
  m.def("dilated_gru_forward", &s2v::dgru::forward, pybind11::arg("x"), pybind11::arg("state"),
        pybind11::arg("weight_ih"), pybind11::arg("weight_hh"), pybind11::arg("bias_ih"),
        pybind11::arg("bias_hh"), pybind11::arg("dilation"), pybind11::arg("feedback_weight"),
        pybind11::arg("feedback_bias"), pybind11::arg("has_state"),
        "Fused dilated residual GRU stack forward -> [y, hist, new_state] "
        "(csrc/dilated_gru/dilated_gru_torch.h).");
  m.def("dilated_gru_backward", &s2v::dgru::backward, pybind11::arg("dy"),
        pybind11::arg("dnew_state"), pybind11::arg("x"), pybind11::arg("y"),
        pybind11::arg("hist"), pybind11::arg("weight_ih"), pybind11::arg("weight_hh"),
        pybind11::arg("bias_ih"), pybind11::arg("bias_hh"), pybind11::arg("dilation"),
        pybind11::arg("feedback_weight"), pybind11::arg("feedback_bias"),
        pybind11::arg("has_state"),
        "Gradients of dilated_gru_forward -> [dx, dstate, dw_ih, dw_hh, db_ih, db_hh, "
        "dfb_w, dfb_b].");
  // ---- dilated_gru (end) ----

  // ---- video_predictor (begin) ----
  // CPU tensors; checks (device, dtype, contiguity, shapes) and the dtype
  // dispatch sit in csrc/video_predictor/video_predictor_torch.cpp, the
  // contract in csrc/video_predictor/video_predictor.h.
  m.def("video_predictor_forward", &s2v::video_predictor::forward, pybind11::arg("x"),
        pybind11::arg("xh"), pybind11::arg("h0"), pybind11::arg("w_sq"), pybind11::arg("b_sq"),
        pybind11::arg("w_h"), pybind11::arg("b_h"), pybind11::arg("w_w"), pybind11::arg("b_w"),
        pybind11::arg("blend_w"), pybind11::arg("blend_b"), pybind11::arg("save_gates") = false,
        "Video prediction layer forward on the CPU -> [y, h_seq, saved gates (or empty)].");
  m.def("video_predictor_backward", &s2v::video_predictor::backward, pybind11::arg("dy"),
        pybind11::arg("dh_last"), pybind11::arg("dh_seq"), pybind11::arg("x"),
        pybind11::arg("xh"), pybind11::arg("h0"), pybind11::arg("h_seq"), pybind11::arg("w_sq"),
        pybind11::arg("b_sq"), pybind11::arg("w_h"), pybind11::arg("b_h"), pybind11::arg("w_w"),
        pybind11::arg("b_w"), pybind11::arg("blend_w"), pybind11::arg("blend_b"),
        pybind11::arg("saved") = at::Tensor(),
        "Gradients of video_predictor_forward -> [dx, dxh, dh0, dw_sq, db_sq, dw_h, db_h, "
        "dw_w, db_w, dblend_w, dblend_b].");
  m.def("dirconv_gru_forward", &s2v::video_predictor::cell_forward, pybind11::arg("x"),
        pybind11::arg("h0"), pybind11::arg("weight"), pybind11::arg("bias"),
        pybind11::arg("orientation"), pybind11::arg("direction"),
        "One (directional) ConvGRU cell over a sequence on the CPU -> h_seq.");
  m.def("dirconv_gru_backward", &s2v::video_predictor::cell_backward, pybind11::arg("dh_seq"),
        pybind11::arg("x"), pybind11::arg("h0"), pybind11::arg("h_seq"),
        pybind11::arg("weight"), pybind11::arg("bias"), pybind11::arg("orientation"),
        pybind11::arg("direction"),
        "Gradients of dirconv_gru_forward -> [dx, dh0, dweight, dbias].");
  // ---- video_predictor (end) ----

  // ---- poison (begin) ----
  // Debug aid of csrc/poison.h, for the tests: whether S2V_POISON_EMPTY=1 is in
  // force for this process, and the allocator the glue uses, on its own.
  m.def("poison_enabled", &s2v::poison_enabled,
        "True when S2V_POISON_EMPTY=1 was set at the first allocation: every buffer the "
        "kernels allocate starts as NaN (floating) or the type's maximum (integer).");
  m.def("_poisoned_empty_like", &s2v::s2v_empty_like, pybind11::arg("t"),
        "s2v_empty_like(t) as the kernels allocate (test aid for csrc/poison.h).");
  // ---- poison (end) ----
}
