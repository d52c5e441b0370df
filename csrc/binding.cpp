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
}
