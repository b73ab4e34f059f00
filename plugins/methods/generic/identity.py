"""`identity` and `identity-translation`: the input returned unchanged — the floor of restoration and
unpaired-translation tables."""

from __future__ import annotations

from typing import Any, Callable

from harness import Method, Sample, hookimpl


class Identity(Method):
    """Input as output: scores the degraded image itself against the ground truth."""

    name = "identity"
    description = "Returns the degraded input unchanged (the floor of every restoration table)."
    tasks = frozenset({"deraining", "inpainting"})

    def predict(self, samples: list[Sample]) -> list[Any]:
        # A method sees the id plus its task's inputs, in the task's order: the first input is the image.
        return [next(value for key, value in sample.items() if key != "id") for sample in samples]


class IdentityTranslation(Method):
    """The source image as its own translation: the floor of unpaired translation (FID/KID of doing nothing)."""

    name = "identity-translation"
    description = "Returns the source-domain image unchanged (the floor of unpaired translation tables)."
    tasks = frozenset({"unpaired-translation"})

    def predict(self, samples: list[Sample]) -> list[Any]:
        return [sample["image"] for sample in samples]


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(Identity)
    register(IdentityTranslation)
