"""Writing a checkpoint when the disk is full: one clear OSError, nothing half-written,
the previous checkpoint intact."""
import errno
import os
from collections import namedtuple

import pytest
import torch

from s2v import checkpoint

StatVFS = namedtuple("StatVFS", "f_bavail f_frsize")


def _failing_save(*args, **kwargs):
    # What torch's zip writer raises when a write comes up short.
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")


@pytest.mark.parametrize("free_bytes,code", [(4096, errno.ENOSPC), (2 ** 40, errno.EIO)],
                         ids=["disk-full", "other-write-failure"])
def test_failed_write_is_a_clear_oserror_and_keeps_the_old_checkpoint(tmp_path, monkeypatch,
                                                                      free_bytes, code):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save_atomic({"step": 1}, str(path))
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _failing_save)
    monkeypatch.setattr(os, "statvfs", lambda folder: StatVFS(free_bytes // 4096, 4096))
    with pytest.raises(OSError) as info:
        checkpoint.save_atomic({"step": 2}, str(path))
    assert info.value.errno == code
    message = str(info.value)
    assert "could not write the checkpoint" in message and "\n" not in message
    assert ("no space left" in message) == (code == errno.ENOSPC)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
