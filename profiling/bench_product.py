"""Training iterations and generation per frame, per backend (issue: the product).

    python -m profiling.bench_product [--size 64] [--frames 16] [--reps 5]

Times the full model (``full`` configuration, 1024/512 channels as in the
paper) on synthetic data: one training iteration (D_V, D_I and G steps with
WGAN-GP, batch 1, T frames) in ms, and generation in ms per output frame
(T-frame chunks, states carried, no encoding), for ``eager`` and every other
backend that runs on the device. Writes
``profiling/results/<date>-<device>-product.json`` (schema in common.py).
"""
from __future__ import annotations

import argparse
import sys

import torch

from profiling.common import RESULTS_DIR, median_ms, run_tests, write_results


def available_backends(device: str):
    from s2v.ops.dilated_gru import dilated_gru_backends
    from s2v.ops.video_predictor import video_predictor_backends

    names = ["eager"]
    for b in ("cpu", "triton", "cuda"):
        ok = any(r.why_unavailable(b) is None for r in (video_predictor_backends,
                                                        dilated_gru_backends))
        runs_here = (b == "cpu") == (device == "cpu")
        if ok and runs_here:
            names.append(b)
    return names + ["auto"]


def main(argv=None) -> int:
    from s2v.models.losses import discriminator_loss, generator_loss
    from s2v.training import build_models

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=RESULTS_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    tests = run_tests(["tests/test_product.py", "tests/models", "tests/nn"])
    dev = torch.device(args.device)
    T, S = args.frames, args.size
    config = {"generator": dict(output_size=S, audio_features=64, channels_base=1024,
                                max_channels=512, sound_route="rnngen", motion_layers=3,
                                cond_gen=True, vid_pred="dir"),
              "data": {"seq_len": T}}
    feats = torch.randn(1, T, 64, device=dev)
    real = torch.rand(1, T, 3, S, S, device=dev) * 2 - 1
    train_ms, gen_ms = {}, {}
    for backend in available_backends(args.device):
        torch.manual_seed(0)
        g, d_v, d_i = build_models(config, backend, dev)
        opts = [torch.optim.Adam(m.parameters(), lr=1e-4, betas=(0.3, 0.999))
                for m in (g, d_v, d_i)]

        def iteration():
            fake, _ = g(feats)
            for opt, loss in ((opts[1], lambda: discriminator_loss(
                    "wgan-gp", d_v, real, fake.detach())),
                    (opts[2], lambda: discriminator_loss(
                        "wgan-gp", d_i, real[:, 0], fake[:, 0].detach()))):
                opt.zero_grad()
                loss().backward()
                opt.step()
            opts[0].zero_grad()
            (generator_loss("wgan-gp", d_v(fake)) + generator_loss("wgan-gp", d_i(fake[:, 0]))
             + 10 * (real - fake).abs().mean()).backward()
            opts[0].step()
            if dev.type == "cuda":
                torch.cuda.synchronize()

        def generation():
            with torch.no_grad():
                g.eval()
                g(feats)
                g.train()
            if dev.type == "cuda":
                torch.cuda.synchronize()

        train_ms[backend] = median_ms(iteration, args.reps, 1)
        gen_ms[backend] = median_ms(generation, args.reps, 1) / T
        print(f"{backend:>7}: train {train_ms[backend]:.0f} ms/iteration, generate "
              f"{gen_ms[backend]:.1f} ms/frame ({1000 / 20 / gen_ms[backend]:.2f}x real time "
              f"at 20 fps)")
    ok = tests["failed"] == 0
    benchmarks = [
        {"name": f"train_iter_s{S}_t{T}_b1", "pass": "train", "dtype": "fp32",
         "shape": {"size": S, "frames": T, "batch": 1, "config": "full"},
         "times_ms": train_ms, "floor_ms": None, "gflops": {}, "peak_mem_mb": {},
         "speedup_vs_eager": {k: train_ms["eager"] / v for k, v in train_ms.items()}
         if ok else None},
        {"name": f"generate_s{S}", "pass": "generate", "dtype": "fp32",
         "shape": {"size": S, "chunk": T, "config": "full"}, "times_ms": gen_ms,
         "floor_ms": None, "gflops": {}, "peak_mem_mb": {},
         "x_real_time_20fps": {k: 50.0 / v for k, v in gen_ms.items()},
         "speedup_vs_eager": {k: gen_ms["eager"] / v for k, v in gen_ms.items()}
         if ok else None},
    ]
    path = write_results("product", benchmarks, tests, device=args.device, out_dir=args.out)
    print(f"tests: {tests}; wrote {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
