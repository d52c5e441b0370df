"""Command line: ``s2v <command>`` (also ``python -m s2v``).

Errors a user can fix (bad arguments, missing or broken media files,
unavailable backends) print one line and exit with status 2 (``--debug`` shows
the traceback); anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from . import __version__


def _demo(args) -> int:
    from .demo import run_demo

    r = run_demo(args.out, minutes=args.minutes, steps=args.steps, size=args.size,
                 seconds=args.seconds, seed=args.seed, device=args.device,
                 backend=args.backend, progress=not args.no_progress)
    m, b = r["model"], r["mean_frame_baseline"]
    print(f"trained {r['steps']} steps on a synthetic clip whose picture follows its sound")
    print(f"held-out 20 %:  model PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}   |   "
          f"mean-frame baseline PSNR {b['psnr']:.2f} dB, SSIM {b['ssim']:.4f}")
    if r["beats_baseline"]:
        print("the model beats the mean-frame baseline on both metrics")
    else:
        print("the model does NOT beat the mean-frame baseline yet: train longer "
              "(--minutes, --steps) or on a GPU")
    print(f"see {args.out}/side_by_side.png (top: ground truth, bottom: generated) and "
          f"{args.out}/reanimated_holdout.mp4")
    return 0


def _train(args) -> int:
    from .training import TrainOptions, train

    given = {k: v for k, v in vars(args).items()
             if k in TrainOptions.__dataclass_fields__ and v is not None}
    if args.no_progress:
        given["progress"] = False
    if "crop" in given:
        given["crop"] = tuple(given["crop"])
    if args.video is None and not args.resume:
        raise ValueError("VIDEO: a new run needs the video to train on (only --resume may "
                         "omit it)")
    summary = train(args.video, args.out, resume=args.resume, force=args.force, **given)
    val = summary["validation"] or {}
    how = f"stopped by {summary['stopped']}" if summary["stopped"] else "done"
    line = f"step {summary['step']}/{summary['steps']} ({how}); checkpoint in {args.out}"
    if val:
        line += (f"; held-out PSNR {val['psnr']:.2f} dB, SSIM {val['ssim']:.4f}, "
                 f"MSE {val['mse']:.5f}")
    print(line)
    # The conventional status of a process ended by a signal: 128 + its number.
    return {"SIGINT": 130, "SIGTERM": 143}.get(summary["stopped"], 0)


def _generate(args) -> int:
    from .generation import generate

    s = generate(args.checkpoint, args.audio, args.out, seed=args.seed, device=args.device,
                 backend=args.backend, precision=args.precision,
                 progress=not args.no_progress)
    print(f"wrote {s['out']}: {s['frames']} frames, {s['audio_seconds']:.2f} s of audio in "
          f"{s['compute_seconds']:.2f} s ({s['real_time_factor']:.2f}x real time, "
          f"{s['ms_per_frame']:.1f} ms/frame)")
    return 0


def _evaluate(args) -> int:
    from .evaluation import evaluate, format_table

    result = evaluate(args.checkpoint, video=args.video, json_path=args.json,
                      device=args.device, backend=args.backend, inception=args.inception,
                      vgg=args.vgg, i3d=args.i3d)
    print(format_table(result))
    return 0


def _doctor(args) -> int:
    from .doctor import format_report, report

    print(format_report(report()))
    return 0


def _add_runtime(p, precision: bool = True) -> None:
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--backend", default="auto", choices=_backends(),
                   help="kernels of the fused layers (default auto)")
    if precision:
        p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train on one video (one-shot)")
    p.add_argument("video", nargs="?",
                   help="the training video, with sound (optional with --resume: the run's "
                        "own clip)")
    p.add_argument("--out", required=True, help="run directory (checkpoint, log, samples)")
    p.add_argument("--size", type=int, help="frame size, power of two (default 128)")
    p.add_argument("--frames", type=int, help="frames per training window T (default 32)")
    p.add_argument("--fps", type=float, help="frame rate (default 20)")
    p.add_argument("--steps", type=int, help="total iterations of the run (default 50000)")
    p.add_argument("--minutes", type=float, help="stop cleanly after this much time")
    p.add_argument("--batch", type=int, help="parallel streams of the video (default 1)")
    p.add_argument("--crop", type=int, nargs=4, metavar=("X", "Y", "W", "H"),
                   help="train on this rectangle of the frame, in source pixels (x, y of "
                        "its top-left corner, width, height); default: the whole frame, "
                        "resized to SIZE×SIZE")
    p.add_argument("--config", help="named configuration: " + ", ".join(_config_names())
                   + " (default full)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--device", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--backend", choices=_backends(),
                   help="kernels of the fused layers (default auto)")
    p.add_argument("--precision", choices=("fp32", "bf16"), help="default fp32")
    p.add_argument("--checkpoint-every", type=int, help="default 1000")
    p.add_argument("--validate-every", type=int, help="default: every checkpoint")
    p.add_argument("--loss", help="wgan-gp (default), wgan, hinge, ns or ls")
    p.add_argument("--l1", type=float, help="weight of the L1 term (default 10)")
    p.add_argument("--channels-base", type=int, help="model width (default 1024)")
    p.add_argument("--max-channels", type=int, help="widest layer (default 512)")
    p.add_argument("--features", help="audio features: lms (default), mel or mfcc")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--force", action="store_true", help="start over in an existing --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_train)


def _config_names():
    from .models.configs import ALIASES, CONFIGS
    return list(CONFIGS) + list(ALIASES)


def _backends():
    from .ops.backend import BACKENDS  # imports torch: only once a command line is parsed
    return BACKENDS


class _OneLineParser(argparse.ArgumentParser):
    """A usage mistake is one line (and exit status 2), like every other user error;
    ``--help`` still shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="s2v", description="Listen and Move: one-shot "
                                     "sound-to-video generation with fused recurrent kernels.")
    parser.add_argument("--version", action="version", version=f"s2v {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of errors instead of one line")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="synthesise a sound-driven clip, train on it for a "
                          "few minutes, re-animate its held-out part and score it")
    demo.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    demo.add_argument("--minutes", type=float, default=3.0, help="training budget (default 3)")
    demo.add_argument("--steps", type=int, default=4000, help="at most this many iterations")
    demo.add_argument("--size", type=int, default=32, help="frame size (default 32)")
    demo.add_argument("--seconds", type=float, default=30.0, help="length of the clip")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="cpu")
    demo.add_argument("--backend", default="auto", choices=_backends())
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(run=_demo)

    _add_train(sub)
    gen = sub.add_parser("generate", help="re-animate the trained scene from an audio file")
    gen.add_argument("checkpoint", help="checkpoint file or run directory")
    gen.add_argument("audio", help="any audio or video file with sound")
    gen.add_argument("--out", required=True, help="output .mp4 (H.264 + AAC)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--no-progress", action="store_true")
    _add_runtime(gen)
    gen.set_defaults(run=_generate)

    ev = sub.add_parser("evaluate", help="MSE/PSNR/SSIM (and FID/LPIPS/FVD given weight "
                        "files) on the held-out 20 %%")
    ev.add_argument("checkpoint", help="checkpoint file or run directory")
    ev.add_argument("--video", help="clip to evaluate on (default: the training video)")
    ev.add_argument("--json", help="also write the metrics to this JSON file")
    ev.add_argument("--inception", metavar="FILE", help="TorchScript Inception "
                    "(inception-2015-12-05.pt) for FID; a local file, never downloaded")
    ev.add_argument("--vgg", metavar="FILE", help="TorchScript VGG16 (vgg16.pt) for LPIPS; "
                    "a local file, never downloaded")
    ev.add_argument("--i3d", metavar="FILE", help="TorchScript I3D (i3d_torchscript.pt) for "
                    "FVD on 16-frame clips; a local file, never downloaded")
    _add_runtime(ev, precision=False)
    ev.set_defaults(run=_evaluate)

    doc = sub.add_parser("doctor", help="versions, GPU, extension and available backends")
    doc.set_defaults(run=_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C while torch is still loading, before any work
        if "--debug" in (sys.argv[1:] if argv is None else argv):
            raise
        print("s2v: interrupted", file=sys.stderr)
        return 130


def _main(argv) -> int:
    from .ops.backend import BackendUnavailableError

    args = build_parser().parse_args(argv)
    if argv is None and not args.debug:
        # The command-line program (not main([...]) called from Python, whose caller
        # may be capturing warnings): one line per warning, like the errors, instead
        # of Python's file:line and source echo.
        def show(message, category, filename, lineno, file=None, line=None):
            print(f"s2v {args.command}: warning: {message}", file=file or sys.stderr)
        warnings.showwarning = show
    try:
        return args.run(args)
    # ImportError: an optional dependency the command needs (PyAV) is missing; its
    # message says what to install.
    except (ValueError, TypeError, OSError, ImportError, BackendUnavailableError) as exc:
        if args.debug:
            raise
        print(f"s2v {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C (or SIGTERM in generate) outside a run's loop
        if args.debug:
            raise
        print(f"s2v {args.command}: interrupted", file=sys.stderr)
        return getattr(exc, "exit_status", 130)
