"""The dilated GRU's CUDA kernels, run on the CPU by an emulator.

`tests/cuda_emulation/` compiles `csrc/dilated_gru/*.cu` as C++20 with stand-ins
for CUDA's headers (one std::thread per CUDA thread, std::barrier for
__syncthreads, emulated warp shuffles; shared memory starts as NaN) and checks
that the grouped kernels give what the per-unit kernels give, forward and
backward, fp32 and bf16, with all weights in shared memory and with none. It
checks indexing, shared-memory layout, barriers and shuffles on machines without
a GPU; it says nothing about speed or the GPU's memory model.
"""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMULATION = os.path.join(ROOT, "tests", "cuda_emulation")
CXX = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def _compile(source: str, out: str) -> subprocess.CompletedProcess:
    return subprocess.run([CXX, "-std=c++20", "-O1", "-pthread", "-DS2V_CUDA_EMULATION",
                           "-I", EMULATION, "-I", os.path.join(ROOT, "csrc"), source, "-o", out],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    if CXX is None:
        pytest.skip("no C++ compiler (set CXX)")
    probe = tmp_path_factory.mktemp("probe") / "barrier.cpp"
    probe.write_text("#include <barrier>\nint main() { std::barrier<> b(1); b.arrive_and_wait(); }\n")
    if _compile(str(probe), str(probe.with_suffix(""))).returncode != 0:
        pytest.skip(f"{CXX} has no C++20 <barrier>")
    exe = tmp_path_factory.mktemp("emulator") / "dilated_gru_kernels"
    proc = _compile(os.path.join(EMULATION, "dilated_gru_kernels.cpp"), str(exe))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return str(exe)


def test_grouped_kernels_match_the_per_unit_kernels(emulator):
    proc = subprocess.run([emulator, "ci"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("0 / ")
