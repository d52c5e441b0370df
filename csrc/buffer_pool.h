// Large CPU buffers (outputs and kernel work buffers) recycled when the tensor dies.
//
// Why: glibc serves allocations above its mmap threshold (at most 32 MB) with
// fresh mmap()ed pages, so every call of a fused op that returns a large
// buffer (the video predictor's per-frame states, the gates it keeps for its
// backward: 40-130 MB at C 32, 64², T 16) page-faults and zeroes all of it
// again: measured at 13 % of the layer's forward+backward, which ate the gain
// of keeping the gates at all. pooled_empty() hands out such buffers from a
// small free list instead; the tensor's deleter puts the memory back, so a
// training loop that allocates the same sizes every iteration touches each
// page once. The video predictor's CPU kernels take their large work buffers
// from here too (they used to keep a per-thread cache of their own). Buffers
// below kMinBytes come from at::empty as usual; at 16 MB the forward lost
// ~8 % against the per-thread cache, because glibc trims and refaults its heap
// for the 3-8 MB buffers, so the threshold is 1 MB. The pool keeps at most kMaxBytes of idle memory
// (largest first out when over), shared by all threads behind a mutex.
#pragma once

#include <ATen/ATen.h>

#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#include "poison.h"

namespace s2v {

class BufferPool {
 public:
  static constexpr size_t kMinBytes = size_t(1) << 20;
  static constexpr size_t kMaxBytes = size_t(1) << 30;
  static constexpr size_t kAlign = 64;

  static BufferPool& instance() {
    static BufferPool* pool = new BufferPool();  // never destroyed: deleters may run late
    return *pool;
  }

  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (size_t i = 0; i < idle_.size(); ++i)
        if (idle_[i].bytes == bytes) {
          void* p = idle_[i].ptr;
          idle_bytes_ -= bytes;
          idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(i));
          return p;
        }
    }
    void* p = std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }

  void give_back(void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    idle_.push_back({p, bytes});
    idle_bytes_ += bytes;
    while (idle_bytes_ > kMaxBytes && !idle_.empty()) {
      size_t big = 0;
      for (size_t i = 1; i < idle_.size(); ++i)
        if (idle_[i].bytes > idle_[big].bytes) big = i;
      std::free(idle_[big].ptr);
      idle_bytes_ -= idle_[big].bytes;
      idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(big));
    }
  }

 private:
  struct Block {
    void* ptr;
    size_t bytes;
  };
  std::mutex mutex_;
  std::vector<Block> idle_;
  size_t idle_bytes_ = 0;
};

// at::empty(sizes, options) for a CPU tensor, its memory from BufferPool when
// large; NaN-poisoned like s2v_empty under S2V_POISON_EMPTY=1.
inline at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  int64_t n = 1;
  for (const int64_t d : sizes) n *= d;
  const size_t bytes = static_cast<size_t>(n) * options.dtype().itemsize();
  if (bytes < BufferPool::kMinBytes || !options.device().is_cpu())
    return s2v_empty(sizes, options);
  void* p = BufferPool::instance().take(bytes);
  at::Tensor t = at::from_blob(
      p, sizes, [bytes](void* q) { BufferPool::instance().give_back(q, bytes); }, options);
  return poison_fill(t);
}

}  // namespace s2v
