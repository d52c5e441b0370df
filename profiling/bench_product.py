"""Training iterations and generation per frame, per backend (issue: the product).

    python -m profiling.bench_product [--quick] [--sizes 64 128] [--frames 16]
        [--configs full ...|all] [--reps N] [--threads 2] [--out DIR]

Times the full model (``full`` configuration, 1024/512 channels as in the
paper) on synthetic data: one training iteration (D_V, D_I and G steps with
WGAN-GP, batch 1, T frames) in ms per iteration, and generation in ms per
output frame (one T-frame chunk, no encoding), for ``eager`` and every other
backend that runs on the device (``auto`` included). Sizes: 64 px, and 128 px
on a GPU; ``--quick``: 64 px, 5 repetitions. ``floor_ms``: the FLOPs that
torch's per-op FLOP formulas (``torch.utils.flop_counter``) count for one eager iteration (convolutions and
matrix products, backward included) over the matmul rate measured in the same
run. ``--configs``: also time generation for other named configurations of the
paper's ablation (``all``: every one; rows ``generate_s<S>_<config>``), to show
which of them reach real time on the device; training is timed for ``full`` only.
Writes ``<out>/<date>-<device>-product.json`` (schema in common.py).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from profiling import peaks as peaks_mod
from profiling.common import (RESULTS_DIR, out_dir, positive_int, round_times, start_run,
                              write_results)
from profiling.timing import resolve_reps, time_ms
from s2v.devices import resolve_device

TESTS = ["tests/test_product.py", "tests/models", "tests/nn"]


def available_backends(device: str):
    from s2v.ops.dilated_gru import dilated_gru_backends
    from s2v.ops.video_predictor import video_predictor_backends

    # A model-wide backend must exist for both fused ops (on a GPU the video
    # predictor is Triton and the dilated GRU CUDA C++: only 'auto' combines them).
    names = ["eager"]
    for b in ("cpu", "triton", "cuda"):
        ok = all(r.why_unavailable(b) is None for r in (video_predictor_backends,
                                                        dilated_gru_backends))
        runs_here = (b == "cpu") == (device == "cpu")
        if ok and runs_here:
            names.append(b)
    return names + ["auto"]


def model_config(size: int, frames: int, config: str = "full") -> dict:
    from s2v.models.configs import named_config

    return {"generator": {"output_size": size, "audio_features": 64, "channels_base": 1024,
                          "max_channels": 512, **named_config(config)},
            "data": {"seq_len": frames}}


def config_slug(config: str) -> str:
    """A benchmark-name-safe form of a configuration name ('+acin' -> 'plus_acin')."""
    return config.replace("+", "plus_")


class Workload:
    """One backend's models, optimisers and inputs; ``iteration`` and ``generation``."""

    def __init__(self, backend: str, size: int, frames: int, device: torch.device,
                 config: str = "full"):
        from s2v.devices import tune_for_fixed_shapes
        from s2v.training import build_models

        tune_for_fixed_shapes(device)  # as `s2v train` and `s2v generate` do
        torch.manual_seed(0)
        self.g, self.d_v, self.d_i = build_models(model_config(size, frames, config), backend,
                                                  device)
        self.opts = [torch.optim.Adam(m.parameters(), lr=1e-4, betas=(0.3, 0.999))
                     for m in (self.g, self.d_v, self.d_i)]
        self.feats = torch.randn(1, frames, 64, device=device)
        self.real = torch.rand(1, frames, 3, size, size, device=device) * 2 - 1

    def iteration(self) -> None:
        from s2v.models.losses import discriminator_loss, generator_loss

        g, d_v, d_i, real = self.g, self.d_v, self.d_i, self.real
        fake, _ = g(self.feats)
        steps = ((self.opts[1], d_v, real, fake), (self.opts[2], d_i, real[:, 0], fake[:, 0]))
        for opt, disc, r, f in steps:
            opt.zero_grad()
            discriminator_loss("wgan-gp", disc, r, f.detach()).backward()
            opt.step()
        self.opts[0].zero_grad()
        (generator_loss("wgan-gp", d_v(fake)) + generator_loss("wgan-gp", d_i(fake[:, 0]))
         + 10 * (real - fake).abs().mean()).backward()
        self.opts[0].step()

    @torch.no_grad()
    def generation(self) -> None:
        self.g.eval()
        self.g(self.feats)
        self.g.train()


def counted_flops(fn) -> float:
    """FLOPs of ``fn`` by torch's per-op formulas (convolutions, matrix products).

    A bare dispatch mode rather than ``FlopCounterMode``: the latter's module
    hooks refuse the gradient penalty's ``autograd.grad`` inside a backward."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                Count.total += formula(*args, **kwargs, out_val=out)
            return out

    with Count():
        fn()
    return float(Count.total)


def resolve_configs(parser, names) -> list:
    from s2v.models.configs import ALIASES, CONFIGS, named_config

    if names == ["all"]:
        return list(CONFIGS)
    for name in names:
        try:
            named_config(name)
        except ValueError as exc:
            parser.error(f"--configs: {exc}")
    return list(dict.fromkeys(ALIASES.get(n, n) for n in names))


def generation_row(config: str, S: int, T: int, dev, device: str, reps: int, peaks) -> dict:
    """Generation ms per frame of one named configuration, eager and every fused backend."""
    times, flops = {}, 0.0
    for backend in available_backends(device):
        work = Workload(backend, S, T, dev, config)
        if backend == "eager":
            flops = counted_flops(work.generation) / T
        times[backend] = time_ms(work.generation, device, reps, warmup=1)["median"] / T
        print(f"{S} px {config} {backend:>7}: generate {times[backend]:.2f} ms/frame "
              f"({1000 / 20 / times[backend]:.2f}x real time at 20 fps)", flush=True)
        del work
    return product_row(f"generate_s{S}_{config_slug(config)}", "generate", times,
                       {"size": S, "chunk": T, "config": config}, flops, reps, peaks)


def product_row(name: str, pas: str, times: dict, shape: dict, flops: float, reps: int,
                peaks) -> dict:
    """One benchmark row (schema in common.py) from the per-backend medians."""
    row = {"name": name, "pass": pas, "dtype": "fp32", "shape": shape,
           "times_ms": round_times(times, 3),
           "floor_ms": peaks_mod.floor_ms(peaks, "fp32", flops),
           "gflops": {k: round(flops / v / 1e6, 2) for k, v in times.items()},
           "peak_mem_mb": {}, "flops": flops, "reps": reps,
           "speedup_vs_eager": {k: round(times["eager"] / v, 3)
                                for k, v in times.items() if k != "eager"}}
    if pas == "generate":
        row["x_real_time_20fps"] = {k: round(50.0 / v, 3) for k, v in times.items()}
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 px, 5 repetitions")
    parser.add_argument("--sizes", type=int, nargs="*", default=None,
                        help="frame sizes (powers of two >= 16)")
    parser.add_argument("--frames", type=int, default=16, help="T (>= 2)")
    parser.add_argument("--configs", nargs="+", default=["full"],
                        help="named configurations whose generation is timed (default "
                             "full; 'all': every one); training: full only")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=out_dir, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    reps = resolve_reps(parser, args.reps, args.quick)
    for S in args.sizes or ():
        if S < 16 or S & (S - 1):
            parser.error(f"--sizes: expected powers of two >= 16, got {S}")
    if args.frames < 2:
        parser.error(f"--frames: expected at least 2, got {args.frames}")
    configs = resolve_configs(parser, args.configs)
    try:
        resolve_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    on_gpu = args.device.startswith("cuda")
    sizes = args.sizes or ([64] if args.quick or not on_gpu else [64, 128])
    tests = start_run(args.threads, TESTS)
    if tests is None:
        return 1
    dev = torch.device(args.device)
    peaks = peaks_mod.measure(args.device, ("fp32",))
    T = args.frames
    benchmarks = []
    for S in sizes:
        train_ms, gen_ms, flops = {}, {}, {}
        for backend in available_backends(args.device):
            work = Workload(backend, S, T, dev)
            if backend == "eager":
                flops = {"train": counted_flops(work.iteration),
                         "generate": counted_flops(work.generation) / T}
            train_ms[backend] = time_ms(work.iteration, args.device, reps, warmup=1)["median"]
            gen_ms[backend] = time_ms(work.generation, args.device, reps,
                                      warmup=1)["median"] / T
            print(f"{S} px {backend:>7}: train {train_ms[backend]:.0f} ms/iteration, generate "
                  f"{gen_ms[backend]:.2f} ms/frame ({1000 / 20 / gen_ms[backend]:.2f}x real "
                  f"time at 20 fps)", flush=True)
            del work
        benchmarks.append(product_row(f"train_iter_s{S}_t{T}_b1", "train", train_ms,
                                      {"size": S, "frames": T, "batch": 1, "config": "full"},
                                      flops["train"], reps, peaks))
        benchmarks.append(product_row(f"generate_s{S}", "generate", gen_ms,
                                      {"size": S, "chunk": T, "config": "full"},
                                      flops["generate"], reps, peaks))
        benchmarks += [generation_row(c, S, T, dev, args.device, reps, peaks)
                       for c in configs if c != "full"]
    path = write_results("product", benchmarks, tests, device=args.device, out_dir=args.out,
                         extra={"peaks": peaks, "threads": args.threads,
                                "notes": {"flops": "torch.utils.flop_counter on eager",
                                          "tf32": "off",
                                          "cudnn_benchmark": torch.backends.cudnn.benchmark}})
    print(f"wrote {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
