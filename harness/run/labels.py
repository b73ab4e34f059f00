"""Metric labels: the same metric may run several times in one cell under different parameters.

``NAME`` or ``NAME@TAG`` is a label (``ssim``, ``ssim@sdsen-official``). Values, records, per-sample
rows and tables are keyed by the label. Parameters are given per label
(``--metric-option ssim@official.convention=sdsen-official``). When a metric declares a
``preset_option`` and the tag is one of that option's choices, the tag sets it
(``ssim@sdsen-official`` = ``ssim`` with ``convention=sdsen-official``); an explicit option wins.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from ..api import Metric
from ..errors import UsageError
from ..registry import Registry


@dataclasses.dataclass(frozen=True)
class Label:
    """A parsed label: the canonical metric name and the optional tag."""

    metric: str
    tag: str | None

    @property
    def text(self) -> str:
        return f"{self.metric}@{self.tag}" if self.tag else self.metric


def parse_label(text: str, registry: Registry[type[Metric]]) -> Label:
    """``NAME[@TAG]`` with NAME a metric name or alias; raises `UsageError` for an empty tag or name."""
    name, at, tag = text.strip().partition("@")
    if not name or (at and not tag.strip()):
        raise UsageError(f"--metric: {text!r} is not a metric label (expected NAME or NAME@TAG)")
    return Label(registry.canonical(name.strip()), tag.strip() or None)


def label_params(
    metric_cls: type[Metric], label: Label, protocol: Mapping[str, Any], given: Mapping[str, Any]
) -> dict[str, Any]:
    """Parameters of one label: the dataset's protocol, then the tag's preset, then explicit options."""
    params = dict(protocol)
    if label.tag is not None and metric_cls.preset_option is not None:
        option = next(o for o in metric_cls.options if o.name == metric_cls.preset_option)
        if option.choices is not None and label.tag in option.choices:
            params[option.name] = label.tag
    params.update(given)
    return params


def parse_labels(texts: Sequence[str], registry: Registry[type[Metric]]) -> list[Label]:
    """Parse and refuse duplicates (the same label twice would overwrite its own values)."""
    labels = [parse_label(text, registry) for text in texts]
    seen: set[str] = set()
    for label in labels:
        if label.text in seen:
            raise UsageError(f"--metric: label {label.text!r} given twice; give the second one a tag (NAME@TAG)")
        seen.add(label.text)
    return labels


def options_by_label(
    options: Mapping[str, Mapping[str, Any]], labels: Sequence[Label], registry: Registry[type[Metric]]
) -> dict[str, dict[str, Any]]:
    """Re-key ``--metric-option`` groups by canonical label text; refuse groups for labels not being run."""
    by_label: dict[str, dict[str, Any]] = {}
    for text, params in options.items():
        key = parse_label(text, registry).text
        by_label.setdefault(key, {}).update(params)
    unknown = sorted(set(by_label) - {label.text for label in labels})
    if unknown:
        running = ", ".join(label.text for label in labels)
        raise UsageError(f"--metric-option given for metric label(s) not being run: {', '.join(unknown)} "
                         f"(running: {running})")
    return by_label
