// S2V_CLONES: compile a hot CPU loop for AVX-512, AVX2+FMA and baseline x86-64,
// picked at load time. The extension is built without -march (it must run on
// any x86-64), so loops outside ATen's kernels would otherwise get SSE2 only.
// GCC's target_clones does not apply to templates: the loops that use it are
// macro-generated per element type.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define S2V_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define S2V_CLONES
#endif
