"""Every Triton kernel in kernels/ compiles offline for sm_90 (no GPU needed).

The interpreter forgives what the compiler rejects (layouts, dot shapes, dtype
mixes in control flow, constexpr misuse), so each kernel variant the launchers
use is compiled with ``triton.compile(ASTSource(...), target=GPUTarget("cuda",
90, 32))`` for float32 and bfloat16, down to a cubin. Registers and spills are
recorded (``record_property``; shown by ``pytest -rA``/junit) and spills must be
zero where ptxas reports them.
"""
import os

import pytest
import torch

from s2v.kernels._triton_support import triton_available

pytestmark = [
    pytest.mark.skipif(not triton_available(), reason="triton is not installed"),
    pytest.mark.skipif(os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"),
                       reason="TRITON_INTERPRET is set: kernels are interpreted functions, "
                              "which triton.compile cannot take"),
]

# (module, its variant labels) for every kernel module with Triton kernels.
MODULES = ["video_predictor"]


def _variants():
    import importlib
    out = []
    for mod in MODULES:
        m = importlib.import_module(f"s2v.kernels.{mod}")
        out += [(mod, label) for label, _, _ in m.kernel_variants()]
    return out


# Ch = 32 takes the largest tiles, Ch = 5 the smallest (16-wide channel tiles).
@pytest.mark.parametrize("channels", [32, 5], ids=lambda c: f"Ch{c}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("module, label", _variants(), ids=lambda v: v)
def test_compiles_for_sm90(module, label, dtype, channels, record_property):
    import importlib
    m = importlib.import_module(f"s2v.kernels.{module}")
    (name, kern, sig, const, options), = [v for v in m.kernel_signatures(dtype, channels)
                                          if v[0] == label]
    compiled = m.compile_offline(kern, sig, const, options, arch=90)
    assert compiled.asm.get("cubin"), "no cubin: ptxas did not run"
    assert compiled.metadata.shared <= 227 * 1024, "over the sm_90 shared-memory limit"
    usage = m.resource_usage(compiled, arch=90)
    record_property("n_regs", usage["n_regs"])
    record_property("n_spills", usage["n_spills"])
    record_property("shared", compiled.metadata.shared)
    if usage["n_spills"] is not None:
        assert usage["n_spills"] == 0, f"{name}: {usage['n_spills']} bytes of register spills"
    if usage["n_regs"] is not None:
        assert usage["n_regs"] <= 255


def test_every_kernel_is_covered():
    """A new @triton.jit kernel in kernels/ must be added to the variants above."""
    import ast
    import pathlib

    import s2v.kernels as pkg
    covered = {label.split("[")[0] for _, label in _variants()}
    found = set()
    for path in pathlib.Path(pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_kernel") and any(
                    "jit" in ast.unparse(d) for d in node.decorator_list):
                found.add(node.name)
    assert found, "no Triton kernels found in kernels/"
    assert found <= covered, f"kernels without an offline-compile variant: {found - covered}"
