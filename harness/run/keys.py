"""Content keys of a cell, computed before anything runs.

* The **prediction key** identifies a set of predictions: everything that can change them (method
  name/version/options/checkpoint digest/untrained seed, dataset name/version/options/split/limit/data
  digest, harness and torch versions, and the source digest of the method and dataset plugins).
* A **score key** per metric label identifies the numbers of one metric on those predictions: the
  prediction key plus the metric's name, version, resolved parameters, plugin source digest and the
  digests of whatever else it reads (weights, reference set).

Both are sha256 over canonical JSON (`canonical_digest`), so equal inputs give equal keys on any machine.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..provenance import canonical_digest


def prediction_key(
    method: Mapping[str, Any], dataset: Mapping[str, Any], versions: Mapping[str, Any], plugins: Mapping[str, str]
) -> str:
    """``method``/``dataset``: the identity fields listed above; ``versions``: harness and torch;
    ``plugins``: source digest per role."""
    return canonical_digest({"kind": "prediction", "method": method, "dataset": dataset,
                             "versions": versions, "plugins": plugins})


def score_key(prediction: str, metric: Mapping[str, Any], reads: Mapping[str, str], plugin: str) -> str:
    """``metric``: name, version and resolved params; ``reads``: digests of files it reads; ``plugin``: source digest."""
    return canonical_digest({"kind": "score", "prediction": prediction, "metric": metric,
                             "reads": reads, "plugin": plugin})
