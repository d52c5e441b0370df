// S2V_CHECK(cond, parts...): TORCH_CHECK whose message is built by string
// concatenation (std::to_string for numbers) instead of c10::str's
// std::ostringstream.
//
// Why: on one GPU machine (torch 2.11, g++ 13, CUDA build of s2v._C) formatting
// an integer into c10::str's stream from inside s2v._C crashed (SIGSEGV in
// std::ostream::_M_insert<long>, reached from a shape check's message), while
// messages made of strings alone were fine. The checks are the product's error
// messages: they must never be the thing that crashes.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <string>
#include <type_traits>

namespace s2v {
namespace check_detail {

inline void append(std::string& s, const char* v) { s += v; }
inline void append(std::string& s, const std::string& v) { s += v; }
template <typename T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
inline void append(std::string& s, T v) {
  s += std::to_string(v);
}
inline void append(std::string& s, double v) { s += std::to_string(v); }
inline void append(std::string& s, at::IntArrayRef v) {
  s += "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(v[i]);
  }
  s += "]";
}
inline void append(std::string& s, at::ScalarType v) { s += c10::toString(v); }
inline void append(std::string& s, const c10::Device& v) { s += v.str(); }

}  // namespace check_detail

template <typename... Args>
std::string check_message(const Args&... args) {
  std::string s;
  (check_detail::append(s, args), ...);
  return s;
}

}  // namespace s2v

#define S2V_CHECK(cond, ...) TORCH_CHECK(cond, ::s2v::check_message(__VA_ARGS__))
