"""Triton kernels of the video prediction layer; launchers in :mod:`.video_predictor`.

Kept apart from the launchers because it imports triton at module level (the
JIT resolves helper functions through module globals); :mod:`.video_predictor`
imports this module on first use only, so ``import s2v.kernels.video_predictor``
works without triton.

The gate buffers (the forward's input gates, the backward's gate gradients)
are padded planes (:mod:`.padded_plane_conv`): row (f·3 + gate)·Ch + channel,
row stride ``g_rs``; pixel (y, x) of image n = b·T + t is element
``n·g_ns + g_off + y·g_wp + x`` of a row (``g_off``: pixel (0, 0) of image 0,
past the margin and the padding). So the convolutions around the
scans read and write them without a layout copy. Everything else is
``[F, B, T, Ch, H·W]``.

Both kernels run the hidden half of the gate convolutions as an implicit GEMM
over a tap table (``[F, KT, 4]`` int32: source offset oy, ox and, per axis,
replicate clamping instead of zero padding), one program per (flow, batch item,
pixel tile) × channel tile. Tiles: BLOCK_P pixels (GEMM M) × BLOCK_N channels
(N), reducing over BLOCK_K channels (K) per tap; sizes that are not multiples
of the tiles are masked.
"""
import triton
import triton.language as tl


@triton.jit
def _mma(a, b, acc, DOT_FP32: tl.constexpr):
    # DOT_FP32: fp32 operands with IEEE products. Needed for fp32 inputs (TF32 would
    # break the 1e-4 tolerance against the eager reference with TF32 off) and under
    # the interpreter, whose bf16 dot is wrong (numpy has no bf16); bf16 -> fp32 is
    # exact, so that emulates a bf16 MMA with fp32 accumulation.
    if DOT_FP32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc)


# t_step changes every launch of a scan: not specialised, so one compile serves all.
@triton.jit(do_not_specialize=["t_step"])
def _video_predictor_fwd_kernel(
        gx_ptr,        # [F·3·Ch, g_rs] fp32 padded planes: input half of the gates, bias included
        h0_ptr,        # [F, B, Ch, HW]: state before frame 0
        hseq_ptr,      # [F, B, T, Ch, HW]: states after each frame (read t-1, write t)
        q_ptr,         # [F, B, TS, Ch, HW] (dtype of h): r ⊙ h, the candidate conv's input
        u_ptr,         # [F, B, TS, Ch, HW] fp32: update gate
        r_ptr,         # [F, B, TS, Ch, HW] fp32: reset gate (written when ALL_T)
        c_ptr,         # [F, B, TS, Ch, HW] fp32: candidate (written when ALL_T)
        w_ptr,         # [F, 3, KT, Ch(in), Ch(out)]: hidden half of the gate weights
        tap_ptr,       # [F, KT, 4] int32: (oy, ox, clamp_y, clamp_x) per tap
        ntap_ptr,      # [F] int32: taps used by each flow
        t_step, B, T, Ch, H, W, KT, g_rs, g_ns, g_wp, g_off,
        PHASE: tl.constexpr, ALL_T: tl.constexpr, DOT_FP32: tl.constexpr,
        BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    # ALL_T: grid covers every frame (backward's recompute, h_{t-1} all known) and
    # the scratch buffers hold all frames (TS = T); else one step t_step, TS = 1.
    HW = H * W
    n_pt = tl.cdiv(HW, BLOCK_P)
    pid = tl.program_id(0)
    pt = pid % n_pt
    rest = pid // n_pt
    if ALL_T:
        t = rest % T
        rest = rest // T
        ts = t
        TS = T
    else:
        t = t_step
        ts = 0
        TS = 1
    b = rest % B
    f = rest // B
    fb = f * B + b

    offs_p = pt * BLOCK_P + tl.arange(0, BLOCK_P)
    p_ok = offs_p < HW
    py = offs_p // W
    px = offs_p % W
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < Ch
    ar_k = tl.arange(0, BLOCK_K)

    chw = Ch * HW
    if t > 0:
        h_base = hseq_ptr + (fb * T + t - 1).to(tl.int64) * chw
    else:
        h_base = h0_ptr + fb.to(tl.int64) * chw
    s_off = (fb * TS + ts).to(tl.int64) * chw       # scratch q, u, r, c
    # This image's reset-gate rows of flow f; the other gates are gate_rows further.
    g_base = gx_ptr + ((b * T + t).to(tl.int64) * g_ns + g_off
                       + (f * 3 * Ch).to(tl.int64) * g_rs)
    gate_rows = g_rs.to(tl.int64) * Ch
    if PHASE == 1:
        src_base = h_base
    else:
        src_base = q_ptr + s_off

    acc0 = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    acc1 = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    n_taps = tl.load(ntap_ptr + f)
    for i in range(n_taps):
        tap = tap_ptr + (f * KT + i) * 4
        oy = tl.load(tap)
        ox = tl.load(tap + 1)
        cy = tl.load(tap + 2)
        cx = tl.load(tap + 3)
        sy = py + oy
        sx = px + ox
        sy = tl.where(cy != 0, tl.minimum(tl.maximum(sy, 0), H - 1), sy)
        sx = tl.where(cx != 0, tl.minimum(tl.maximum(sx, 0), W - 1), sx)
        src_ok = p_ok & (sy >= 0) & (sy < H) & (sx >= 0) & (sx < W)
        src_pix = sy * W + sx
        if PHASE == 1:
            w0 = w_ptr + ((f * 3 + 0) * KT + i).to(tl.int64) * Ch * Ch
            w1 = w_ptr + ((f * 3 + 1) * KT + i).to(tl.int64) * Ch * Ch
        else:
            w0 = w_ptr + ((f * 3 + 2) * KT + i).to(tl.int64) * Ch * Ch
            w1 = w0
        for k0 in range(0, Ch, BLOCK_K):
            offs_k = k0 + ar_k
            k_ok = offs_k < Ch
            a = tl.load(src_base + offs_k[None, :] * HW + src_pix[:, None],
                        mask=src_ok[:, None] & k_ok[None, :], other=0.0)
            w_off = offs_k[:, None] * Ch + offs_n[None, :]
            w_ok = k_ok[:, None] & n_ok[None, :]
            acc0 = _mma(a, tl.load(w0 + w_off, mask=w_ok, other=0.0), acc0, DOT_FP32)
            if PHASE == 1:
                acc1 = _mma(a, tl.load(w1 + w_off, mask=w_ok, other=0.0), acc1, DOT_FP32)

    own = offs_n[None, :] * HW + offs_p[:, None]
    own_ok = p_ok[:, None] & n_ok[None, :]
    g_pix = offs_n[None, :] * g_rs + (py * g_wp + px)[:, None]
    h = tl.load(h_base + own, mask=own_ok, other=0.0).to(tl.float32)
    if PHASE == 1:
        r = tl.sigmoid(acc0 + tl.load(g_base + g_pix, mask=own_ok, other=0.0))
        u = tl.sigmoid(acc1 + tl.load(g_base + gate_rows + g_pix, mask=own_ok, other=0.0))
        tl.store(q_ptr + s_off + own, (r * h).to(q_ptr.dtype.element_ty), mask=own_ok)
        tl.store(u_ptr + s_off + own, u, mask=own_ok)
        if ALL_T:
            tl.store(r_ptr + s_off + own, r, mask=own_ok)
    else:
        z = acc0 + tl.load(g_base + 2 * gate_rows + g_pix, mask=own_ok, other=0.0)
        # tanh via exp of a non-positive argument: no overflow, no libdevice call.
        e = tl.exp(-2.0 * tl.abs(z))
        c = (1.0 - e) / (1.0 + e)
        c = tl.where(z < 0, -c, c)
        if ALL_T:
            tl.store(c_ptr + s_off + own, c, mask=own_ok)
        else:
            u = tl.load(u_ptr + s_off + own, mask=own_ok, other=0.0)
            h_new = h + u * (c - h)
            tl.store(hseq_ptr + (fb * T + t).to(tl.int64) * chw + own,
                     h_new.to(hseq_ptr.dtype.element_ty), mask=own_ok)

@triton.jit(do_not_specialize=["t_step"])
def _video_predictor_bwd_kernel(
        g_ptr,         # [F·3·Ch, g_rs] fp32 padded planes, zero outside the images:
                       # gradients of the gate pre-activations
        r_ptr, u_ptr, c_ptr,   # [F, B, T, Ch, HW] fp32: recomputed gates
        dhb_ptr,       # [F, B, T, Ch, HW] fp32: gradient reaching h_t from the blend
        h0_ptr,        # [F, B, Ch, HW]
        hseq_ptr,      # [F, B, T, Ch, HW]
        carry_ptr,     # [F, B, Ch, HW] fp32: terms of dh_{t-1} local to the pixel
        dh0_ptr,       # [F, B, Ch, HW] fp32: gradient w.r.t. h0 (written at t = 0)
        w_ptr,         # [F, 3, KT, Ch(out), Ch(in)]: hidden half of the gate weights
        tap_ptr, ntap_ptr,
        t_step, B, T, Ch, H, W, KT, g_rs, g_ns, g_wp, g_off,
        PHASE: tl.constexpr, DOT_FP32: tl.constexpr,
        BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    # Reverse step t. Phase 1: dq = conv_oᵀ(G_o) -> G_r, carry += dq ⊙ r.
    # Phase 2: dh_{t-1} = carry + conv_rᵀ(G_r) + conv_uᵀ(G_u), then the local
    # gradients of step t-1 (G_o, G_u, carry) so the next reverse step starts ready.
    HW = H * W
    n_pt = tl.cdiv(HW, BLOCK_P)
    pid = tl.program_id(0)
    pt = pid % n_pt
    fb = pid // n_pt
    f = fb // B
    b = fb % B
    t = t_step

    offs_p = pt * BLOCK_P + tl.arange(0, BLOCK_P)
    p_ok = offs_p < HW
    py = offs_p // W
    px = offs_p % W
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < Ch
    ar_k = tl.arange(0, BLOCK_K)

    chw = Ch * HW
    # Frame t's reset-gate rows of flow f; the other gates are gate_rows further.
    g_t = g_ptr + ((b * T + t).to(tl.int64) * g_ns + g_off + (f * 3 * Ch).to(tl.int64) * g_rs)
    gate_rows = g_rs.to(tl.int64) * Ch
    if PHASE == 1:
        ga = g_t + 2 * gate_rows
        gb = ga
    else:
        ga = g_t
        gb = g_t + gate_rows

    acc = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    n_taps = tl.load(ntap_ptr + f)
    for i in range(n_taps):
        tap = tap_ptr + (f * KT + i) * 4
        oy = tl.load(tap)
        ox = tl.load(tap + 1)
        cy = tl.load(tap + 2)
        cx = tl.load(tap + 3)
        # Transposed tap: the pixels whose source is ours. On a zero-padded axis
        # that is one pixel; on a replicate-clamped axis (offset oc, at most one
        # per tap) the border line also gathers the |oc| pixels clamped onto it.
        # Their gradients share the tap's weight, so they are summed before the dot.
        oc = oy * cy + ox * cx
        n_m = tl.abs(oc) + 1
        step = tl.where(oc > 0, 1, -1)
        pc = py * cy + px * cx
        edge = tl.where(oc > 0, (H - 1) * cy + (W - 1) * cx, 0)
        on_edge = pc == edge
        if PHASE == 1:
            wa = w_ptr + ((f * 3 + 2) * KT + i).to(tl.int64) * Ch * Ch
            wb = wa
        else:
            wa = w_ptr + ((f * 3 + 0) * KT + i).to(tl.int64) * Ch * Ch
            wb = w_ptr + ((f * 3 + 1) * KT + i).to(tl.int64) * Ch * Ch
        for k0 in range(0, Ch, BLOCK_K):
            offs_k = k0 + ar_k
            k_ok = offs_k < Ch
            rows_k = offs_k * g_rs
            sa = tl.zeros((BLOCK_P, BLOCK_K), dtype=tl.float32)
            sb = tl.zeros((BLOCK_P, BLOCK_K), dtype=tl.float32)
            for m in range(n_m):
                sy = py - oy + step * m * cy
                sx = px - ox + step * m * cx
                ok = p_ok & (sy >= 0) & (sy < H) & (sx >= 0) & (sx < W)
                # A branch, not `& ((m == 0) | on_edge)`: with the mask folded in,
                # triton 3.6 spills 12 bytes in the fp32 PHASE=1 kernel.
                if m > 0:
                    ok = ok & on_edge
                off = rows_k[None, :] + (sy * g_wp + sx)[:, None]
                msk = ok[:, None] & k_ok[None, :]
                sa += tl.load(ga + off, mask=msk, other=0.0)
                if PHASE == 2:
                    sb += tl.load(gb + off, mask=msk, other=0.0)
            w_off = offs_k[:, None] * Ch + offs_n[None, :]
            w_ok = k_ok[:, None] & n_ok[None, :]
            wt_a = tl.load(wa + w_off, mask=w_ok, other=0.0)
            acc = _mma(sa.to(wt_a.dtype), wt_a, acc, DOT_FP32)
            if PHASE == 2:
                wt_b = tl.load(wb + w_off, mask=w_ok, other=0.0)
                acc = _mma(sb.to(wt_b.dtype), wt_b, acc, DOT_FP32)

    own = offs_n[None, :] * HW + offs_p[:, None]
    own_ok = p_ok[:, None] & n_ok[None, :]
    carry = carry_ptr + fb.to(tl.int64) * chw + own
    if PHASE == 1:
        s_t = (fb * T + t).to(tl.int64) * chw + own
        r = tl.load(r_ptr + s_t, mask=own_ok, other=0.0)
        if t > 0:
            hp = tl.load(hseq_ptr + (fb * T + t - 1).to(tl.int64) * chw + own,
                         mask=own_ok, other=0.0).to(tl.float32)
        else:
            hp = tl.load(h0_ptr + fb.to(tl.int64) * chw + own,
                         mask=own_ok, other=0.0).to(tl.float32)
        g_pix = offs_n[None, :] * g_rs + (py * g_wp + px)[:, None]
        tl.store(g_t + g_pix, acc * hp * r * (1.0 - r), mask=own_ok)
        tl.store(carry, tl.load(carry, mask=own_ok, other=0.0) + acc * r, mask=own_ok)
    else:
        dh = acc + tl.load(carry, mask=own_ok, other=0.0)
        if t > 0:
            s_p = (fb * T + t - 1).to(tl.int64) * chw + own
            dh += tl.load(dhb_ptr + s_p, mask=own_ok, other=0.0)
            u = tl.load(u_ptr + s_p, mask=own_ok, other=0.0)
            c = tl.load(c_ptr + s_p, mask=own_ok, other=0.0)
            if t > 1:
                hp = tl.load(hseq_ptr + (fb * T + t - 2).to(tl.int64) * chw + own,
                             mask=own_ok, other=0.0).to(tl.float32)
            else:
                hp = tl.load(h0_ptr + fb.to(tl.int64) * chw + own,
                             mask=own_ok, other=0.0).to(tl.float32)
            g_p = g_t - g_ns      # frame t - 1
            g_pix = offs_n[None, :] * g_rs + (py * g_wp + px)[:, None]
            tl.store(g_p + 2 * gate_rows + g_pix, dh * u * (1.0 - c * c), mask=own_ok)
            tl.store(g_p + gate_rows + g_pix, dh * (c - hp) * u * (1.0 - u), mask=own_ok)
            tl.store(carry, dh * (1.0 - u), mask=own_ok)
        else:
            tl.store(dh0_ptr + fb.to(tl.int64) * chw + own, dh, mask=own_ok)
