"""`copy-source`: the source image returned as the generated one — the floor of pose-transfer tables.

SSIM rewards blur and identity (PG² and Def-GAN both note it), so a method has to beat the unchanged
source image on SSIM and mask-SSIM before its numbers mean anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness import Method, Sample, hookimpl


class CopySource(Method):
    """The person in the source pose, unchanged: what a generator that ignores the target pose scores."""

    name = "copy-source"
    description = "Returns the source image unchanged (the floor of pose-transfer tables)."
    tasks = frozenset({"pose-transfer"})

    def predict(self, samples: list[Sample]) -> list[Any]:
        return [sample["source"] for sample in samples]


@hookimpl
def harness_register_methods(register: Callable[[type], None]) -> None:
    register(CopySource)
