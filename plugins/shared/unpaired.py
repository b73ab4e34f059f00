"""The unpaired-translation dataset contract: two domains whose training images can be drawn separately.

Dataset plugins (the CycleGAN folders, Maps, the digit pairs) implement it; translation methods (CycleGAN,
UNIT, SAT) and the target-accuracy metric rely on it, so it lives here rather than in either family.
"""

from __future__ import annotations

from harness import Dataset, Option, Sample

DIRECTIONS = ("AtoB", "BtoA")
SIDES = ("source", "target")


class UnpairedDomains(Dataset):
    """An unpaired-translation set whose two training domains can be listed separately.

    Translation recipes (CycleGAN, SAT) draw independent batches from `domain_index(split, "source")`
    and `domain_index(split, "target")` and decode rows with `load`; the method translates `samples`."""

    task = "unpaired-translation"
    splits = ("train", "test")
    default_split = "test"
    options = (
        Option("direction", "AtoB", "AtoB translates domain A into B; BtoA the reverse", str, DIRECTIONS),
    )

    def domains(self) -> tuple[str, str]:
        """(source, target) domain names of the chosen direction."""
        return ("A", "B") if self.config["direction"] == "AtoB" else ("B", "A")

    def domain_index(self, split: str, side: str) -> list[Sample]:
        """Rows ``{"id", "domain", ...}`` of the source or target domain of a split (see `SIDES`)."""
        raise NotImplementedError
