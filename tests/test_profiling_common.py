"""What every benchmark JSON records about the code that ran (profiling/common.py)."""
import re

from profiling import common


def test_commit_is_the_checkout_or_the_named_one(monkeypatch):
    """A results JSON names the commit that ran: git's HEAD, or S2V_COMMIT for a tree
    copied to another machine without current git metadata."""
    monkeypatch.delenv("S2V_COMMIT", raising=False)
    head = common.commit()
    assert head == "unknown" or re.fullmatch(r"[0-9a-f]{40}", head)
    monkeypatch.setenv("S2V_COMMIT", " 0123456789abcdef0123456789abcdef01234567\n")
    assert common.commit() == "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("S2V_COMMIT", "   ")
    assert common.commit() == head
