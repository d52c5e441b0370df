"""s2v.devices: the --device check and the per-device settings training and generation share."""
import pytest
import torch

from s2v.devices import resolve_device, tune_for_fixed_shapes


def test_cudnn_benchmark_only_for_cuda(monkeypatch):
    """cuDNN picks its algorithms by timing them when the device is CUDA (fixed shapes
    for thousands of steps); a CPU run leaves the process-wide flag alone. Setting the
    flag needs no GPU, so both branches run everywhere."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    tune_for_fixed_shapes("cpu")
    tune_for_fixed_shapes(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    tune_for_fixed_shapes(torch.device("cuda", 0))
    assert torch.backends.cudnn.benchmark is True


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "mps", 3.5])
def test_bad_devices_name_the_flag(bad):
    with pytest.raises(ValueError, match="--device"):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(ValueError, match="sees no CUDA device"):
        resolve_device("cuda")
