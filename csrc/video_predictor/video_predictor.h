// Video prediction layer (SPEC §5): five (directional) ConvGRU flows over T
// frames and their 1×1 blend, forward and backward, on the CPU.
//
// Framework-free API: plain pointers to contiguous arrays, element type T =
// float or double (bfloat16/float16 callers convert to float first and back
// afterwards, so every sum accumulates in at least fp32). The implementation
// uses ATen GEMMs internally; nothing here exposes it.
//
// FUNCTIONAL CONTRACT (shared with the Triton kernels in kernels/video_predictor.py)
// ---------------------------------------------------------------------------
// forward(x [B,T,C,H,W], xh [B,T,C,H,W], h0 [F,B,Ch,H,W],
//         w_sq [3,Ch,C+Ch,k,k], b_sq [3,Ch], w_h [3,Ch,C+Ch,taps], b_h [3,Ch],
//         w_w [3,Ch,C+Ch,taps], b_w [3,Ch], blend_w [C+1,5Ch], blend_b [C+1])
//   -> (y [B,T,C,H,W], h_seq [F,B,T,Ch,H,W])
//   Directional: F = 5, Ch = C, flows in order (square), (h, +1), (h, -1),
//   (w, +1), (w, -1); flows 1-2 share w_h/b_h, flows 3-4 share w_w/b_w.
//   Basic: F = 1, Ch = C+1, the h/w/blend weights are absent (numel 0) and y
//   is the blend of h_seq[0] itself (first C channels p, last one the mask
//   logit m: y = xh·σ(m) + p·(1-σ(m))). The new state is h_seq[:, :, -1].
// backward(dy [B,T,C,H,W], dh_last [F,B,Ch,H,W] (zeros when unused), x, xh, h0,
//          h_seq, weights...) -> (dx, dxh, dh0, dw_sq, db_sq, dw_h, db_h, dw_w,
//          db_w, dblend_w, dblend_b), absent weights giving absent gradients.
//   This implementation also accepts dh_seq [F,B,T,Ch,H,W], the gradient of
//   every returned hidden state (dh_last is then its last frame); either or
//   both may be null.
//
// Gate layout (every cell): gates stacked reset, update, output on the first
// axis of w and b; the input channels of each gate are [x (C), h (Ch)].
// Square weight taps: (ky, kx) row-major over k×k, zero padding k/2.
// Directional weight taps: sub-kernels s = 0..(k-1)/2 end to end, 2s+1 taps
// each for offsets j = -s..s; tap (s, j) of an 'h' cell with direction d reads
// input (clamp(y - d·s), x + j) (rows replicate, columns zero-padded); a 'w'
// cell reads (y + j, clamp(x - d·s)).
//
// GRU step: r = σ(Conv_r[x,h]), u = σ(Conv_u[x,h]), c = tanh(Conv_o[x, r⊙h]),
// h ← (1-u)⊙h + u⊙c.
//
// Buffer lifetimes: all pointers are borrowed for the duration of the call
// only; outputs must not alias inputs. The functions allocate their scratch
// (channels-last copies of the inputs and states, and per-chunk gate buffers
// in the backward, bounded by kChunkBytes) and free it before returning.
// Outputs are fully written (no accumulation into caller memory).
#pragma once

#include <cstdint>

namespace s2v {
namespace video_predictor {

// Which layer the call computes.
enum class Layout : int {
  kDirectional = 0,  // five flows + blend (F = 5, Ch = C)
  kBasic = 1,        // one square flow, y = blend of its own state (F = 1, Ch = C+1)
  kSingleCell = 2,   // one flow of the given orientation/direction, no blend:
                     // the dirconv_gru op; y/xh/dy/dxh are unused (null)
};

// 0 = square, 1 = 'h', 2 = 'w' (only read for kSingleCell).
enum Orientation : int { kSquare = 0, kAlongWidth = 1, kAlongHeight = 2 };

struct Problem {
  int64_t B, T, C, Ch, H, W, k;
  Layout layout;
  int orientation;  // kSingleCell only
  int direction;    // kSingleCell only: +1 or -1
  // Backward: recompute the candidate gate instead of recovering it from
  // h_t = h + u·(c - h). Set when h_seq was stored in 16 bits (its rounding,
  // divided by u, would reach the gradients).
  bool recompute_candidate = false;
  int flows() const { return layout == Layout::kDirectional ? 5 : 1; }
  int64_t taps(int orient) const {
    const int64_t half = (k + 1) / 2;
    return orient == kSquare ? k * k : half * half;
  }
};

// Weights, each contiguous in the contract's layout; the cells are indexed
// 0 = square (w_sq), 1 = 'h' (w_h), 2 = 'w' (w_w). kBasic/kSingleCell use cell 0
// only (for kSingleCell, cell 0 holds the weight of `orientation`, i.e.
// [3,Ch,C+Ch,k,k] or [3,Ch,C+Ch,taps]). blend_* are null unless kDirectional.
template <typename T>
struct Weights {
  const T* w[3] = {nullptr, nullptr, nullptr};
  const T* b[3] = {nullptr, nullptr, nullptr};
  const T* blend_w = nullptr;  // [C+1, 5·Ch]
  const T* blend_b = nullptr;  // [C+1]
};

template <typename T>
struct WeightGrads {
  T* w[3] = {nullptr, nullptr, nullptr};
  T* b[3] = {nullptr, nullptr, nullptr};
  T* blend_w = nullptr;
  T* blend_b = nullptr;
};

// x, xh: [B,T,C,H,W] (xh unused for kSingleCell); h0: [F,B,Ch,H,W].
// Writes y [B,T,C,H,W] (not for kSingleCell) and h_seq [F,B,T,Ch,H,W], and,
// when `saved` is not null, the gates for the backward: saved [F,T,3,N·Ch]
// with N = B·H·W pixels, channels-last: per (flow, frame) first the reset and
// update gates (N rows of 2·Ch: r, u), then q = r ⊙ h_{t-1} (N rows of Ch).
template <typename T>
void forward_cpu(const Problem& p, const T* x, const T* xh, const T* h0, const Weights<T>& w,
                 T* y, T* h_seq, T* saved = nullptr);

// dy: [B,T,C,H,W] or null (kSingleCell); dh_seq: [F,B,T,Ch,H,W] or null;
// dh_last: [F,B,Ch,H,W] or null; x, xh, h0, h_seq as in forward_cpu (h_seq
// the forward's output); saved: the forward's saved gates, or null to
// recompute them (must be null when p.recompute_candidate). Writes dx
// [B,T,C,H,W], dxh [B,T,C,H,W] (not for kSingleCell), dh0 [F,B,Ch,H,W] and
// every non-null gradient in g (shaped like the weight it belongs to).
template <typename T>
void backward_cpu(const Problem& p, const T* dy, const T* dh_seq, const T* dh_last, const T* x,
                  const T* xh, const T* h0, const T* h_seq, const Weights<T>& w, T* dx, T* dxh,
                  T* dh0, const WeightGrads<T>& g, const T* saved = nullptr);

}  // namespace video_predictor
}  // namespace s2v
