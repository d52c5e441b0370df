"""Test support shipped with the package (the golden-vector runner)."""
