"""The ``backend`` attribute of the fused layers: checked against the op's registry
when it is set, so a typo fails at the assignment, not at the next forward."""
from __future__ import annotations


def backend_property(registry, on_set=None) -> property:
    """A ``backend`` property whose setter validates with ``registry.check``
    (:class:`s2v.ops.backend.OpBackends`), then calls ``on_set(self, backend)``."""
    def get(self) -> str:
        return self._backend

    def set_(self, value: str) -> None:
        self._backend = registry.check(value)
        if on_set is not None:
            on_set(self, self._backend)

    return property(get, set_, doc=f"Which implementation of {registry.op_name} runs: "
                                   f"'auto', 'eager' or a fused kernel family.")
