"""How every benchmark times a callable, on the CPU and on a GPU.

``time_ms(step, device, reps)`` returns the median of ``reps`` timed calls
after ``warmup`` untimed ones:

- CPU: ``time.perf_counter`` around each call; the caller fixes the thread
  count (``torch.set_num_threads``) and reports it.
- CUDA: a pair of CUDA events around each call, read after one final
  synchronisation, and the L2 cache flushed (a buffer twice the L2 size is
  overwritten) before every repetition, so a kernel never finds its inputs
  left in L2 by the previous repetition.

``cuda_graph(step)`` captures ``step`` (forward, or forward + backward into
the parameters' ``.grad``) in a CUDA graph and returns the replay: the "eager
under CUDA graphs" baseline, which removes launch gaps but not launches.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

MIN_REPS = 20
QUICK_REPS = 5


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


_L2_BUFFER = []


def flush_l2() -> None:
    """Overwrites a buffer twice the size of L2 (cheap next to any timed step)."""
    if not _L2_BUFFER:
        l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 * 2 ** 20)
        _L2_BUFFER.append(torch.empty(2 * max(l2, 2 ** 20) // 4, dtype=torch.float32,
                                      device="cuda"))
    _L2_BUFFER[0].fill_(1.0)


def time_ms(step: Callable[[], object], device: str = "cpu", reps: int = MIN_REPS,
            warmup: int = 3) -> dict[str, float]:
    """``{"median": ms, "min": ms, "reps": n}`` of ``step`` on ``device``."""
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    if str(device).startswith("cuda"):
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(reps)]
        for start, end in events:
            flush_l2()
            start.record()
            step()
            end.record()
        torch.cuda.synchronize()
        times = [start.elapsed_time(end) for start, end in events]
    else:
        for _ in range(reps):
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
    return {"median": statistics.median(times), "min": min(times), "reps": reps}


def cuda_graph(step: Callable[[], object]) -> Callable[[], None]:
    """A replay of ``step`` captured in a CUDA graph (inputs and parameters stay put).

    Warm-up runs on a side stream first, as capture requires; ``.grad`` tensors
    created there become the graph's static gradient buffers, so a captured
    backward accumulates into the same memory on every replay."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    torch.cuda.synchronize()

    def replay() -> None:
        graph.replay()

    # The graph reads and writes the closure's tensors (model, input, .grad) by
    # address: they must live as long as the replay does.
    replay.keep_alive = (graph, step)
    return replay


def resolve_reps(parser, reps: int | None, quick: bool) -> int:
    """The repetition count of a benchmark run: the default, or the user's if it is
    at least the minimum (20, or 5 with --quick); otherwise a usage error."""
    least = QUICK_REPS if quick else MIN_REPS
    reps = least if reps is None else reps
    if reps < least:
        parser.error(f"--reps: at least {least}")
    return reps


# Untimed calls before an op benchmark's timed ones. More than time_ms's default:
# the cpu dilated GRU times its first calls of a shape both ways (a team of
# threads, one thread) before it settles on the faster (7 calls), and the timed
# calls should see what a training run sees after that.
OP_WARMUP = 8


def time_with_memory(make_step: Callable[[], Callable[[], object]], device: str,
                     reps: int) -> dict:
    """:func:`time_ms` of the step ``make_step()`` builds (after ``OP_WARMUP`` untimed
    calls), plus on a GPU ``peak_mb``: the peak allocated memory from building the
    step (model, inputs) to the last repetition."""
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    res = time_ms(make_step(), device, reps, warmup=OP_WARMUP)
    sync(device)
    if cuda:
        res["peak_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return res
