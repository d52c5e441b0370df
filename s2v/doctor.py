"""``s2v doctor``: what this installation can run, and why not the rest."""
from __future__ import annotations

import platform

import torch


def report() -> dict:
    from . import __version__
    from ._extension import build_info
    from .ops.dilated_gru import dilated_gru_backends
    from .ops.dirconv_gru import dirconv_gru_backends
    from .ops.video_predictor import video_predictor_backends

    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    try:
        import av
        av_version = av.__version__
    except ImportError:
        av_version = None
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    ops = {}
    for registry in (video_predictor_backends, dirconv_gru_backends, dilated_gru_backends):
        status = {}
        for b in ("eager", "cpu", "triton", "cuda"):
            why = registry.why_unavailable(b)
            if why is None and b in ("triton", "cuda") and gpu is None:
                # Installed and usable, but not here: these kernels run on a GPU.
                why = "installed, but no CUDA GPU is visible to torch here"
            status[b] = why or "available"
        ops[registry.op_name] = status
    return {"s2v": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torch_cuda": torch.version.cuda, "triton": triton_version, "pyav": av_version,
            "gpu": gpu, "extension": build_info(), "backends": ops}


def format_report(info: dict) -> str:
    ext = info["extension"]
    lines = [f"s2v {info['s2v']}  python {info['python']}  torch {info['torch']} "
             f"(CUDA {info['torch_cuda'] or 'none'})  triton {info['triton'] or 'not installed'}"
             f"  PyAV {info['pyav'] or 'not installed'}",
             f"GPU: {info['gpu'] or 'none visible to torch'}",
             "extension s2v._C: " + (
                 f"built (CUDA part: {'yes, ' + ext.get('cuda_archs', '') if ext.get('with_cuda') else 'no'}"
                 f", OpenMP: {'yes' if ext.get('with_openmp') else 'no'}"
                 f", video predictor CPU taps: "
                 f"{'AVX-512 kernel' if ext.get('cpu_fused_taps') else 'one GEMM per tap'})"
                 if ext.get("available") else f"not available: {ext.get('error')}"),
             "backends:"]
    for op, backends in info["backends"].items():
        lines.append(f"  {op}:")
        for name, status in backends.items():
            lines.append(f"    {name:<7} {status}")
    return "\n".join(lines)
