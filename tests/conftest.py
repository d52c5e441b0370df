"""Shared fixtures: deterministic seeds and the golden-vector directory."""
import os

import pytest
import torch

GOLDEN_DIR = os.path.join(os.path.dirname(__file__), "golden")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def golden_files(prefix: str = ""):
    return sorted(f for f in os.listdir(GOLDEN_DIR)
                  if f.endswith(".npz") and f.startswith(prefix))
