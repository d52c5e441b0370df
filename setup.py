# Build script for s2v and its compiled extension s2v._C.
#
# Install with `pip install --no-build-isolation -e .` (or `make install`):
# the extension links against libtorch, and an isolated build would compile it
# against whatever torch pip downloads into the throwaway build environment
# (a multi-GB CUDA build, possibly another version) instead of the one the
# package will run with.
#
# Environment variables read at build time
# ----------------------------------------
#   S2V_BUILD_CUDA      "1": build the CUDA part of s2v._C (csrc/**/*.cu, plus
#                       -DS2V_WITH_CUDA for the C++ sources) and fail with an
#                       explanation if no CUDA toolkit or no CUDA build of torch
#                       is present. "0": never build it. Unset or empty: build
#                       it when both are present: a toolkit root (bin/nvcc and
#                       include/cuda_runtime.h) at $CUDA_HOME, $CUDA_PATH, behind
#                       the nvcc on PATH or at /usr/local/cuda, and
#                       torch.version.cuda is not None.
#   S2V_CUDA_ARCHS      GPU architectures for the CUDA part, ';'- or
#                       ','-separated compute capabilities, default "80;90a".
#                       Each entry becomes one explicit -gencode flag (SASS for
#                       that arch); "8.0" and "sm_80" mean "80"; a "+PTX" suffix
#                       also embeds PTX for JIT on newer GPUs. Given explicitly
#                       so that the build never inspects the GPUs of the
#                       machine it runs on (torch's TORCH_CUDA_ARCH_LIST default
#                       would).
#   S2V_SKIP_EXTENSION  "1": install the pure-Python package without s2v._C
#                       (torch is then not needed at build time). The fused
#                       CPU/CUDA backends report themselves unavailable.
#   MAX_JOBS            Read by torch's BuildExtension: number of parallel
#                       ninja compile jobs (nvcc is memory hungry; lower it on
#                       small machines).
#   CUDA_HOME, CXX      The usual meaning: where the CUDA toolkit lives, which
#                       C++ compiler to use.

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from glob import glob

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))

# torch >= 2.10 builds extensions as C++20 by default and its headers rely on
# C++20 features (a C++17 build of them only compiles as a GCC extension, with
# warnings, and nvcc rejects some of it), so the standard is pinned to what
# torch itself uses rather than to an older one.
CXX_STD = "-std=c++20"
DEFAULT_CUDA_ARCHS = "80;90a"


def note(message):
    # stderr: stdout of `setup.py --version` and friends is parsed by tools.
    print(f"s2v: {message}", file=sys.stderr)


def read_version():
    with open(os.path.join(ROOT, "s2v", "__init__.py"), encoding="utf-8") as f:
        match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', f.read(), re.M)
    if not match:
        sys.exit("error: could not find __version__ in s2v/__init__.py")
    return match.group(1)


def read_readme():
    # README.md may be absent in a partial checkout; metadata must not depend on it.
    path = os.path.join(ROOT, "README.md")
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as f:
        return f.read()


def env_flag(name):
    """None when unset/empty, else True/False; anything else is an error."""
    value = os.environ.get(name, "").strip().lower()
    if value == "":
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    sys.exit(f"error: {name}={os.environ[name]!r}: expected 1 or 0 (or unset)")


def sources(pattern):
    # Paths relative to setup.py: setuptools rejects absolute source paths in sdists.
    found = glob(os.path.join(ROOT, "csrc", "**", pattern), recursive=True)
    return sorted(os.path.relpath(p, ROOT) for p in found)


def is_cuda_home(path):
    return bool(path) and os.path.isfile(os.path.join(path, "bin", "nvcc")) \
        and os.path.isfile(os.path.join(path, "include", "cuda_runtime.h"))


def find_cuda_home():
    """Root of the CUDA toolkit, or None.

    torch guesses the root as the parent of the `nvcc` on PATH, which is wrong
    when that nvcc is a wrapper script or symlink outside the toolkit (then it
    cannot find libcudart at link time); only a directory that really holds a
    toolkit is accepted here.
    """
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if is_cuda_home(os.environ.get(var)):
            return os.environ[var]
    on_path = shutil.which("nvcc")
    if on_path:
        home = os.path.dirname(os.path.dirname(os.path.realpath(on_path)))
        if is_cuda_home(home):
            return home
    return "/usr/local/cuda" if is_cuda_home("/usr/local/cuda") else None


def want_cuda(torch):
    """Decide whether to build the CUDA part: (bool, CUDA home or reason why not)."""
    requested = env_flag("S2V_BUILD_CUDA")
    if requested is False:
        return False, "S2V_BUILD_CUDA=0"
    cuda_home = find_cuda_home()
    missing = []
    if torch.version.cuda is None:
        missing.append(f"the installed torch {torch.__version__} is a CPU-only build "
                       "(torch.version.cuda is None); install a CUDA build of torch")
    if cuda_home is None:
        missing.append("no CUDA toolkit was found (no bin/nvcc and include/cuda_runtime.h "
                       "under $CUDA_HOME, $CUDA_PATH, the nvcc on PATH or /usr/local/cuda); "
                       "install one or set CUDA_HOME")
    if not missing:
        return True, cuda_home
    reason = "; and ".join(missing)
    if requested:
        sys.exit("error: S2V_BUILD_CUDA=1 asks for the CUDA part of s2v._C, but "
                 f"{reason}. Unset S2V_BUILD_CUDA (or set it to 0) to build the "
                 "CPU-only extension.")
    return False, reason


def cuda_arch_flags():
    """Explicit -gencode flags and the normalised arch list for build_info()."""
    raw = os.environ.get("S2V_CUDA_ARCHS", "").strip() or DEFAULT_CUDA_ARCHS
    flags, names = [], []
    for entry in re.split(r"[;,\s]+", raw):
        if not entry:
            continue
        ptx = entry.lower().endswith("+ptx")
        arch = entry[:-4] if ptx else entry
        arch = arch.replace(".", "").lower()
        if arch.startswith("sm_"):
            arch = arch[3:]
        if not re.fullmatch(r"\d{2,3}[af]?", arch):
            sys.exit(f"error: S2V_CUDA_ARCHS: {entry!r} is not a compute capability "
                     "like 80, 8.0, 90a or 90+PTX")
        flags.append(f"-gencode=arch=compute_{arch},code=sm_{arch}")
        if ptx:
            flags.append(f"-gencode=arch=compute_{arch},code=compute_{arch}")
        names.append(arch + ("+PTX" if ptx else ""))
    if not flags:
        sys.exit("error: S2V_CUDA_ARCHS is empty")
    return flags, ";".join(names)


def openmp_flags():
    """-fopenmp if the C++ compiler accepts it and can link an OpenMP program.

    Apple clang, for one, has no -fopenmp; the extension then builds without
    OpenMP (build_info() reports with_openmp=False) instead of failing.
    """
    cxx = os.environ.get("CXX") or (sysconfig.get_config_var("CXX") or "c++").split()[0]
    program = "#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp_check.cpp")
        with open(src, "w") as f:
            f.write(program)
        try:
            result = subprocess.run([cxx, "-fopenmp", src, "-o", os.path.join(tmp, "omp_check")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    timeout=120)
        except (OSError, subprocess.SubprocessError):
            return []
    return ["-fopenmp"] if result.returncode == 0 else []


def write_build_config(cuda_archs):
    # A header instead of -DS2V_CUDA_ARCHS="..." because ';' and '+' in the value
    # do not survive every build path (ninja runs a shell, the fallback does not).
    gen_dir = os.path.join(ROOT, "build", "s2v_generated")
    os.makedirs(gen_dir, exist_ok=True)
    path = os.path.join(gen_dir, "s2v_build_config.h")
    content = ("// Generated by setup.py; do not edit.\n#pragma once\n"
               f'#define S2V_CUDA_ARCHS "{cuda_archs}"\n')
    # Rewriting an identical header would make ninja recompile binding.cpp.
    current = None
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            current = f.read()
    if current != content:
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)
    return gen_dir


def extension_modules():
    """([Extension], {cmdclass}) for s2v._C, or ([], {}) when it is skipped."""
    if env_flag("S2V_SKIP_EXTENSION"):
        note("S2V_SKIP_EXTENSION=1, installing without the compiled extension s2v._C")
        stale = glob(os.path.join(ROOT, "s2v", "_C.*"))
        if stale:
            # Not deleted here (setup.py also runs for sdist/egg_info), but an
            # editable install would load it, so say so.
            note(f"warning: {os.path.relpath(stale[0], ROOT)} from an earlier build is still "
                 "in the source tree and an editable install will import it; `make clean` "
                 "removes it")
        return [], {}
    try:
        import torch
    except ImportError as exc:
        sys.exit(
            f"error: building s2v._C needs torch installed first ({exc}).\n"
            "  Install torch into this environment (e.g. `pip install torch==2.13.0`, or "
            "`make install`) and build with `pip install --no-build-isolation -e .`; "
            "or set S2V_SKIP_EXTENSION=1 to install without the compiled extension.")

    cpp_sources = sources("*.cpp")
    cu_sources = sources("*.cu")
    with_cuda, cuda_home_or_reason = want_cuda(torch)
    if with_cuda:
        # torch.utils.cpp_extension reads CUDA_HOME once, at import: point it at
        # the toolkit found above rather than let it guess from PATH.
        os.environ["CUDA_HOME"] = cuda_home_or_reason
    from torch.utils import cpp_extension

    cxx_flags = ["-O3", CXX_STD] + openmp_flags()
    link_flags = ["-fopenmp"] if "-fopenmp" in cxx_flags else []
    macros = []
    cuda_archs = ""
    if with_cuda:
        arch_flags, cuda_archs = cuda_arch_flags()
        macros.append(("S2V_WITH_CUDA", None))
        # -lineinfo costs nothing at run time and lets profilers map SASS to source.
        nvcc_flags = ["-O3", CXX_STD, "-lineinfo"] + arch_flags
        ext_cls = cpp_extension.CUDAExtension
        ext_sources = cpp_sources + cu_sources
        extra_compile_args = {"cxx": cxx_flags, "nvcc": nvcc_flags}
        note(f"building s2v._C with CUDA (archs {cuda_archs}), "
             f"{len(cpp_sources)} C++ + {len(cu_sources)} CUDA sources")
    else:
        ext_cls = cpp_extension.CppExtension
        ext_sources = cpp_sources
        extra_compile_args = {"cxx": cxx_flags}
        note(f"building s2v._C for the CPU only ({cuda_home_or_reason}), "
             f"{len(cpp_sources)} C++ sources")
    if not link_flags:
        note("the C++ compiler does not support -fopenmp; building without OpenMP")

    ext = ext_cls(
        name="s2v._C",
        sources=ext_sources,
        include_dirs=[os.path.join(ROOT, "csrc"), write_build_config(cuda_archs)],
        define_macros=macros,
        extra_compile_args=extra_compile_args,
        extra_link_args=link_flags,
    )

    class BuildExt(cpp_extension.BuildExtension.with_options(use_ninja=True)):
        def finalize_options(self):
            super().finalize_options()
            # An editable install compiles in a fresh temporary directory each
            # time, so every reinstall would recompile all of csrc/; a fixed one
            # lets ninja rebuild only what changed.
            if getattr(self, "editable_mode", False):
                self.build_temp = os.path.join(ROOT, "build", "editable-temp")

    return [ext], {"build_ext": BuildExt}


ext_modules, cmdclass = extension_modules()

setup(
    version=read_version(),
    long_description=read_readme(),
    long_description_content_type="text/markdown",
    # kernels/ lives at the repository root but is installed as s2v.kernels, so
    # that no top-level `kernels` module lands in site-packages.
    package_dir={"s2v.kernels": "kernels"},
    packages=find_packages(include=["s2v", "s2v.*"]) + ["s2v.kernels"],
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
