"""Every CUDA source in csrc/ compiles with nvcc for sm_80 and sm_90a, without spills.

Runs wherever nvcc is installed, GPU or not, so that compile errors in the CUDA
kernels surface on CPU-only machines. Compiles device code only (``-cubin``),
which is what can break without a GPU; the host side of the .cu files is built
by setup.py on CUDA machines.
"""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
ARCHS = ("sm_80", "sm_90a")


def _cu_sources():
    found = []
    for base, _dirs, files in os.walk(CSRC):
        found += [os.path.join(base, f) for f in files if f.endswith(".cu")]
    return sorted(found)


def _nvcc():
    for candidate in (os.environ.get("NVCC"), shutil.which("nvcc"),
                      os.path.join(os.environ.get("CUDA_HOME", ""), "bin", "nvcc"),
                      "/usr/local/cuda/bin/nvcc", "/usr/local/bin/nvcc"):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


NVCC = _nvcc()
SOURCES = _cu_sources()


def test_there_are_cuda_sources():
    assert SOURCES, "no .cu file under csrc/"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: os.path.relpath(p, CSRC))
def test_cuda_sources_include_no_torch_headers(source):
    # The CUDA kernels are framework-free; torch glue lives in .cpp files.
    with open(source, encoding="utf-8") as f:
        includes = re.findall(r"^\s*#\s*include\s*[<\"]([^>\"]+)[>\"]", f.read(), re.M)
    bad = [i for i in includes if i.split("/")[0] in ("torch", "ATen", "c10", "pybind11")]
    assert not bad, f"{source} includes {bad}"


def parse_ptxas(text):
    """[(kernel, registers, spill_store_bytes, spill_load_bytes)] from `-Xptxas -v` output."""
    kernels = []
    current = None
    for line in text.splitlines():
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            current = [m.group(1), None, None, None]
            kernels.append(current)
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and current is not None:
            current[2], current[3] = int(m.group(1)), int(m.group(2))
            continue
        m = re.search(r"Used (\d+) registers", line)
        if m and current is not None:
            current[1] = int(m.group(1))
    return [tuple(k) for k in kernels]


def test_parse_ptxas_reads_spills():
    sample = ("ptxas info    : Function properties for _Z1kv\n"
              "    0 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n"
              "ptxas info    : Used 255 registers, used 1 barriers\n")
    assert parse_ptxas(sample) == [("_Z1kv", 255, 8, 4)]


@pytest.mark.skipif(NVCC is None, reason="nvcc not found (set NVCC or CUDA_HOME, or put it on "
                                         "PATH); the CUDA sources are compiled where it exists")
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: os.path.relpath(p, CSRC))
def test_nvcc_compiles_without_spills(source, arch, tmp_path):
    cmd = [NVCC, "-std=c++17", f"-arch={arch}", "-O3", "-Xptxas", "-v", "-I", CSRC,
           "-cubin", "-o", str(tmp_path / "out.cubin"), source]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"nvcc failed ({' '.join(cmd)}):\n{output}"
    kernels = parse_ptxas(output)
    assert kernels, f"no kernel reported by ptxas:\n{output}"
    spilling = [k for k in kernels if k[2] != 0 or k[3] != 0]
    assert not spilling, f"register spills: {spilling}"
    assert "warning" not in output.lower(), output
