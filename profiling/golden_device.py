"""The golden runner (``python -m s2v.testing.golden``) with modules and tensors on a device.

    python -m profiling.golden_device --device cuda FILE.npz [...] --backend triton \
        [--precision fp32|bf16] [--allow-tf32]

``s2v.testing.golden`` builds every module and input on the CPU, where the
``triton`` and ``cuda`` backends refuse to run. This wrapper moves them to
``--device``: modules right after they are built from the file's weights,
inputs as they are made, and references back to the CPU for the comparison.
Everything else (tolerances, output, exit status) is the runner's own.

TF32 is switched off for the run (``torch.backends.{cuda.matmul,cudnn}.allow_tf32
= False``): the fused kernels do their input-gate convolutions through torch,
and SPEC §10's fused-fp32 tolerance (1e-4) assumes float32 arithmetic, which
TF32 convolutions (PyTorch's default for cuDNN) do not give. ``--allow-tf32``
keeps PyTorch's defaults, to see what a default training run gets.

When ``s2v.testing.golden`` itself accepts ``--device``, use that instead
(profiling/gpu_check.sh checks for it).
"""
from __future__ import annotations

import argparse
import sys

import torch


def patch_golden(device: str):
    """Point s2v.testing.golden's module builder and tensor maker at ``device``."""
    from s2v.testing import golden

    make_tensor = golden._tensor
    build = golden.from_published
    compare = golden.relative_error

    def _tensor(array, dtype, grad=False, batch=False):
        return make_tensor(array, dtype, False, batch).to(device).requires_grad_(grad)

    def from_published(*args, **kwargs):
        return build(*args, **kwargs).to(device)

    def relative_error(ours, ref):
        if isinstance(ref, torch.Tensor):
            ref = ref.detach().cpu()
        return compare(ours, ref)

    golden._tensor = _tensor
    golden.from_published = from_published
    golden.relative_error = relative_error
    return golden


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m profiling.golden_device", add_help=False,
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--allow-tf32", action="store_true")
    ap.add_argument("-h", "--help", action="store_true")
    args, rest = ap.parse_known_args(argv)
    if args.help:
        print(__doc__)
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"profiling.golden_device: --device {args.device}: no CUDA GPU visible to torch",
              file=sys.stderr)
        return 2
    if not args.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    golden = patch_golden(str(device))
    print(f"golden runner on {device} (TF32 {'allowed' if args.allow_tf32 else 'off'})",
          flush=True)
    return golden.main(rest)


if __name__ == "__main__":
    sys.exit(main())
