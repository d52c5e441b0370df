// Debug allocation helpers: at::empty / at::empty_like that can poison.
//
// Every output and workspace buffer the ATen glue (csrc/*/*_torch.cpp) and the
// CPU kernels allocate goes through s2v_empty / s2v_empty_like instead of
// at::empty / at::empty_like. Normally they are exactly those (no fill, no
// cost). With the environment variable
//
//   S2V_POISON_EMPTY=1
//
// set when the process first allocates through them (the variable is read
// once), every new floating-point (and complex) buffer is filled with NaN and
// every integer buffer with its type's maximum, so a kernel that reads memory
// nothing wrote (a gradient accumulated with += into an unzeroed buffer, the
// padded rows of a tile, an output element it skipped) produces NaN or an
// out-of-range index instead of silently passing on whatever the allocator
// happened to return. tests/conftest.py sets it for the whole test suite (the
// Python-side torch.empty is poisoned there separately, from Python, since
// ATen's at::empty cannot be patched from outside). Bool buffers are left as
// they are: neither value is an invalid one.
#pragma once

#include <ATen/ATen.h>

#include <cstdlib>
#include <cstring>
#include <limits>

namespace s2v {

// Whether S2V_POISON_EMPTY=1 was set; read on first use and then fixed (one
// static for the whole extension: inline functions share their statics).
inline bool poison_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("S2V_POISON_EMPTY");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return enabled;
}

// Fills t with the poison value of its dtype when poisoning is on; returns t.
inline at::Tensor poison_fill(at::Tensor t) {
  if (!poison_enabled() || t.numel() == 0 || t.layout() != at::kStrided) return t;
  const auto st = t.scalar_type();
  if (at::isFloatingType(st) || at::isComplexType(st)) {
    t.fill_(std::numeric_limits<double>::quiet_NaN());
  } else if (st == at::kByte || st == at::kChar || st == at::kShort || st == at::kInt ||
             st == at::kLong) {
    AT_DISPATCH_INTEGRAL_TYPES(st, "s2v_poison_fill",
                               [&] { t.fill_(std::numeric_limits<scalar_t>::max()); });
  }
  return t;
}

inline at::Tensor s2v_empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  return poison_fill(at::empty(sizes, options));
}

inline at::Tensor s2v_empty_like(const at::Tensor& t) {
  return poison_fill(at::empty_like(t));
}

}  // namespace s2v
