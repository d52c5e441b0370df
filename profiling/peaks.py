"""The device's two ceilings and the roofline floors built from them.

METHOD: a floor is ``max(FLOPs / compute peak, bytes / memory bandwidth)``,
with both peaks *measured in the same run* (datasheet figures are recorded
beside them for reference, never used for a floor):

- compute: a large matrix product through torch (cuBLAS / the CPU BLAS), fp32
  with TF32 off, and bf16 where a bf16 benchmark runs;
- memory: a large device-to-device copy, counting bytes read plus written.

The dilated GRU stack is a latency problem (SPEC §9): its floor is the
dependency chain, ``(T + L)`` cell steps times the time of one dependent step,
whichever is larger than the arithmetic floor. One dependent step cannot beat a
``D``-long multiply-add chain split into ``CHAIN_SPLIT`` partial sums, plus one
block-wide barrier on a GPU; the constants are named in the JSON.
"""
from __future__ import annotations

import statistics
import time

import torch

from profiling.timing import sync

# Datasheet dense peaks (GFLOP/s, GB/s) for reference next to the measured ones.
NOMINAL = {
    "H100 80GB HBM3": {"fp32_gflops": 66_900, "bf16_gflops": 989_400, "dram_gbs": 3_350},
    "H100 PCIe": {"fp32_gflops": 51_200, "bf16_gflops": 756_000, "dram_gbs": 2_000},
    "H200": {"fp32_gflops": 66_900, "bf16_gflops": 989_400, "dram_gbs": 4_800},
}
# One dependent GRU step: an FMA has ~4 cycles of latency; a D-long dot product
# split into 4 independent partial sums is ~D cycles deep; a GPU block barrier
# plus a shared-memory round trip adds ~100 cycles.
FMA_LATENCY_CYCLES = 4
CHAIN_SPLIT = 4
GPU_BARRIER_CYCLES = 100


def _median_s(fn, reps: int, device: str) -> float:
    fn()
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_gflops(device: str, dtype=torch.float32, n: int | None = None, reps: int = 10) -> float:
    """Measured rate of an n×n×n product (TF32 off for fp32)."""
    n = n or (8192 if device.startswith("cuda") else 2048)
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n ** 3 / _median_s(lambda: a @ b, reps, device) / 1e9


def copy_gbs(device: str, mib: int | None = None, reps: int = 10) -> float:
    """Measured bandwidth of a device-to-device copy (read + write bytes)."""
    mib = mib or (2048 if device.startswith("cuda") else 256)
    src = torch.randn(mib * 2 ** 18, device=device)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / _median_s(lambda: dst.copy_(src), reps, device) / 1e9


def clock_ghz(device: str) -> float:
    if device.startswith("cuda"):
        try:
            return torch.cuda.get_device_properties(0).clock_rate / 1e6  # kHz -> GHz
        except AttributeError:
            return 1.755
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
        return max(mhz) / 1000 if mhz else 2.5
    except OSError:
        return 2.5


def measure(device: str, dtypes=("fp32",)) -> dict[str, object]:
    """The ``peaks`` block of the results JSON."""
    peaks = {"fp32_gflops": matmul_gflops(device, torch.float32),
             "bf16_gflops": (matmul_gflops(device, torch.bfloat16) if "bf16" in dtypes
                             else None),
             "dram_gbs": copy_gbs(device), "clock_ghz": clock_ghz(device),
             "source": ("measured in this run: square matmul through torch (fp32 with TF32 "
                        "off; bf16) and a device-to-device copy (bytes read + written)"),
             "step_latency_model": {"fma_latency_cycles": FMA_LATENCY_CYCLES,
                                    "chain_split": CHAIN_SPLIT,
                                    "gpu_barrier_cycles": GPU_BARRIER_CYCLES}}
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(0)
        peaks["nominal"] = next((v for k, v in NOMINAL.items() if k in name), None)
    return peaks


def floor_ms(peaks: dict[str, object], dtype: str, flops: float = 0.0,
             bytes_moved: float = 0.0, chain_steps: int = 0, chain_depth: int = 0,
             on_gpu: bool = False) -> float | None:
    """max(compute floor, memory floor, dependency-chain floor) in ms."""
    rate = peaks.get(f"{dtype}_gflops") or peaks.get("fp32_gflops")
    terms = []
    if flops and rate:
        terms.append(flops / (rate * 1e9))
    if bytes_moved and peaks.get("dram_gbs"):
        terms.append(bytes_moved / (peaks["dram_gbs"] * 1e9))
    if chain_steps:
        cycles = FMA_LATENCY_CYCLES * chain_depth / CHAIN_SPLIT
        if on_gpu:
            cycles += GPU_BARRIER_CYCLES
        terms.append(chain_steps * cycles / (peaks["clock_ghz"] * 1e9))
    return max(terms) * 1e3 if terms else None
