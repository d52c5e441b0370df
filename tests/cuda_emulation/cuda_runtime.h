// Stand-in for CUDA's cuda_runtime.h when tests/cuda_emulation compiles the
// kernels of csrc/ as plain C++ (S2V_CUDA_EMULATION): a block is one
// std::thread per CUDA thread, __syncthreads a std::barrier of the block, a warp
// shuffle two barriers of the warp around a per-warp exchange array. Enough for
// the dilated GRU kernels: their indexing, shared-memory layout, barriers and
// shuffles run as written; timing and memory model do not.
#pragma once
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(x)

struct S2vEmulatedDim3 {
  unsigned x = 0, y = 0, z = 0;
};
inline thread_local S2vEmulatedDim3 threadIdx, blockIdx, blockDim;

// The running block's state (one block at a time).
inline float* s2v_emulated_smem = nullptr;
inline std::barrier<>* s2v_emulated_block_barrier = nullptr;
inline std::barrier<>* s2v_emulated_warp_barrier[32];
inline float s2v_emulated_exchange[32][32];

inline float* s2v_emulated_shared_memory() { return s2v_emulated_smem; }
inline void __syncthreads() { s2v_emulated_block_barrier->arrive_and_wait(); }

inline float __shfl_xor_sync(unsigned /*mask*/, float v, int lane_mask, int width) {
  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32;
  s2v_emulated_exchange[warp][lane] = v;
  s2v_emulated_warp_barrier[warp]->arrive_and_wait();
  int src = lane ^ lane_mask;
  if (src / width != lane / width) src = lane;  // outside the segment: own value
  const float r = s2v_emulated_exchange[warp][src];
  s2v_emulated_warp_barrier[warp]->arrive_and_wait();
  return r;
}

template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
typedef void* cudaStream_t;
typedef int cudaError_t;
