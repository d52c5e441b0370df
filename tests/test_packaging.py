"""The installed package has the layout and pieces the build promises."""
import importlib
import os
import shutil
import sys

import pytest

import s2v
from s2v import _extension

SKIPPED_EXTENSION = os.environ.get("S2V_SKIP_EXTENSION", "").strip().lower() in ("1", "true", "yes", "on")

BUILD_INFO_KEYS = {"with_cuda", "with_openmp", "torch_version", "cuda_archs"}


def test_version_is_a_string():
    assert isinstance(s2v.__version__, str) and s2v.__version__


def test_kernels_is_a_subpackage_of_s2v():
    kernels = importlib.import_module("s2v.kernels")
    pkg_dir = os.path.dirname(os.path.abspath(s2v.__file__))
    kernels_dir = os.path.dirname(os.path.abspath(kernels.__file__))
    # Installed: <site-packages>/s2v/kernels. Editable: the repository's kernels/,
    # which sits beside the s2v/ source directory.
    assert kernels_dir in (os.path.join(pkg_dir, "kernels"),
                           os.path.join(os.path.dirname(pkg_dir), "kernels"))
    assert kernels.__name__ == "s2v.kernels"


def test_triton_probes_never_raise():
    from s2v.kernels import _triton_support

    available = _triton_support.triton_available()
    version = _triton_support.triton_version()
    assert isinstance(available, bool)
    assert (version is None) == (not available)


def test_build_info_has_its_keys():
    info = _extension.build_info()
    assert BUILD_INFO_KEYS <= set(info)
    assert isinstance(info["with_cuda"], bool)
    assert isinstance(info["with_openmp"], bool)
    assert isinstance(info["cuda_archs"], str)
    if not info["with_cuda"]:
        assert info["cuda_archs"] == ""


@pytest.mark.skipif(SKIPPED_EXTENSION, reason="installed with S2V_SKIP_EXTENSION=1: no s2v._C")
def test_compiled_extension_loads():
    import torch

    assert _extension.extension_available(), _extension.build_info()["error"]
    module = _extension.load_extension()
    assert module is _extension.load_extension()  # cached
    info = module.build_info()
    assert BUILD_INFO_KEYS <= set(info)
    assert info["torch_version"] == torch.__version__.split("+")[0]
    if torch.version.cuda is None:
        assert info["with_cuda"] is False


def test_missing_extension_error_says_how_to_fix(monkeypatch):
    monkeypatch.setattr(_extension, "_module", None)
    monkeypatch.setattr(_extension, "_error", None)
    # None in sys.modules makes the import fail exactly as a missing module does.
    monkeypatch.setitem(sys.modules, "s2v._C", None)
    with pytest.raises(RuntimeError, match="pip install --no-build-isolation -e ."):
        _extension.load_extension()
    assert _extension.extension_available() is False
    info = _extension.build_info()
    assert info["available"] is False and info["with_cuda"] is False
    assert "S2V_SKIP_EXTENSION" in info["error"]


def test_stale_extension_error_says_rebuild():
    exc = ImportError("/x/s2v/_C.so: undefined symbol: _ZN3c104cuda9SomethingEv")
    message = _extension._explain_import_error(exc, "9.9.0")
    assert "different torch" in message and "torch 9.9.0" in message
    assert "pip install --no-build-isolation -e ." in message


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc on PATH")
@pytest.mark.skip(reason="CUDA build check not needed yet: no .cu sources and no GPU in CI")
def test_cuda_build():
    info = _extension.build_info()
    assert info["with_cuda"] and info["cuda_archs"]
