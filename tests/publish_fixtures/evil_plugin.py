"""A third-party method whose description and paper try to inject markup into the published site."""

from __future__ import annotations

from harness import Method, hookimpl


class Evil(Method):
    name = "evil-derainer"
    description = "<script>alert(1)</script> returns the rainy input"
    paper = "<img src=x onerror=alert(2)>"
    tasks = frozenset({"deraining"})

    def predict(self, samples):
        return [sample["rainy"].clamp(0, 1) for sample in samples]


@hookimpl
def harness_register_methods(register):
    register(Evil)
