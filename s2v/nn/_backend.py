"""The ``backend`` attribute of the fused layers: checked against the op's registry
when it is set, so a typo fails at the assignment, not at the next forward."""
from __future__ import annotations


def backend_property(registry, on_set=None) -> property:
    """A ``backend`` property whose setter validates with ``registry.check``
    (:class:`s2v.ops.backend.OpBackends`), then calls ``on_set(self, backend)``."""
    def get(self) -> str:
        return self._backend

    def set_(self, value: str) -> None:
        owner = getattr(self, "_backend_owner", None)
        if owner is not None:  # e.g. a VideoPredictor's cells: the layer runs them all
            raise AttributeError(f"this {type(self).__name__} is part of a {owner}, which "
                                 f"runs the kernels of all its cells: set the {owner}'s "
                                 f"backend instead")
        self._backend = registry.check(value)
        if on_set is not None:
            on_set(self, self._backend)

    return property(get, set_, doc=f"Which implementation of {registry.op_name} runs: "
                                   f"'auto', 'eager' or a fused kernel family.")
