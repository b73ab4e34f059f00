"""`cmc`, `map` and `minp`: re-identification retrieval metrics under a dataset's protocol.

Each metric collects one embedding per sample with the sample's ``pid``, ``camid``, ``role``,
``modality`` (and optional ``trial``) and, at ``compute``, ranks the gallery for every query under the
protocol the dataset fixes (``market1501``, ``regdb`` or ``sysu``; see `reid_protocols`). Values are
percentages, as the papers print them; queries without a true match are skipped.

The three metrics usually run together on the same predictions, so the ranking is computed once and
shared through a small cache keyed by the identity of the embedding tensors and the protocol
parameters (the cache keeps the tensors alive, so an identity can never be reused by other data).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from harness import DataError, Metric, Option, Sample, UsageError, hookimpl
from harness.run.devices import resolve_device

from .reid_protocols import (
    DIRECTIONS,
    DISTANCES,
    PROTOCOLS,
    SAMPLERS,
    SYSU_GALLERY_CAMS,
    SYSU_SHOTS,
    Comparison,
    Protocol,
    Ranking,
    SampleTable,
    evaluate,
)

AP_KINDS = ("noninterp", "trapezoid")
CACHE_SIZE = 2
PROTOCOL_FIELDS = tuple(field.name for field in dataclasses.fields(Protocol))

PROTOCOL_OPTIONS = (
    Option("protocol", "market1501", "evaluation protocol (set by the dataset)", choices=PROTOCOLS),
    Option("distance", "sqeuclidean", "squared Euclidean (torchreid default), Euclidean (SYSU MATLAB) or cosine", choices=DISTANCES),
    Option("normalize", False, "L2-normalise the embeddings before the distance (AGW, Hi-CMD)"),
    Option("direction", "v2t", "regdb: visible→thermal (the papers) or thermal→visible", choices=DIRECTIONS),
    Option("mode", "all", "sysu: all-search (gallery cameras 1, 2, 4, 5) or indoor-search (1, 2)", choices=tuple(SYSU_GALLERY_CAMS)),
    Option("shot", "single", "sysu: 1 (single) or 10 (multi) gallery images per person and camera", choices=tuple(SYSU_SHOTS)),
    Option("trials", 10, "sysu: number of gallery samplings averaged"),
    Option(
        "sampler", "auto",
        "sysu gallery sampling: official rand_perm_cam.mat, seeded, or auto (official if perm_file exists)",
        choices=SAMPLERS,
    ),
    Option("perm_file", "", "sysu: path of the official rand_perm_cam.mat"),
    Option("seed", 0, "sysu: seed of the sampler used without the official permutations"),
    Option("device", "auto", "where distances and ranking run: auto (the run's device; from Python: cuda if available), cpu or cuda[:N]"),
)


def cmc(
    embeddings: torch.Tensor,
    pids: Any,
    camids: Any,
    roles: Sequence[str] | None = None,
    *,
    modalities: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    trials: Any = None,
    max_rank: int = 50,
    device: str = "auto",
    **protocol: Any,
) -> torch.Tensor:
    """Functional twin of `CMC`: the (max_rank,) CMC curve in percent, averaged over trials.

    ``embeddings`` is (N, D), one row per sample; the other arguments are the samples' fields;
    ``protocol`` takes the `Protocol` parameters (``protocol="sysu"``, ``mode=``, ...).
    """
    results = _evaluate_fields(embeddings, pids, camids, roles, modalities, ids, trials, device, protocol)
    return _mean(r.cmc(max_rank) for _, r in results) * 100.0


def mean_ap(
    embeddings: torch.Tensor,
    pids: Any,
    camids: Any,
    roles: Sequence[str] | None = None,
    *,
    modalities: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    trials: Any = None,
    ap: str = "noninterp",
    device: str = "auto",
    **protocol: Any,
) -> float:
    """Functional twin of `MAP`: mean AP in percent (``ap="trapezoid"`` for the official Market script)."""
    if ap not in AP_KINDS:
        raise UsageError(f"mean_ap: ap must be one of {', '.join(AP_KINDS)}; got {ap!r}")
    results = _evaluate_fields(embeddings, pids, camids, roles, modalities, ids, trials, device, protocol)
    return float(_mean(_ap(r, ap).mean() for _, r in results)) * 100.0


def mean_inp(
    embeddings: torch.Tensor,
    pids: Any,
    camids: Any,
    roles: Sequence[str] | None = None,
    *,
    modalities: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    trials: Any = None,
    device: str = "auto",
    **protocol: Any,
) -> float:
    """Functional twin of `MINP`: mean inverse negative penalty in percent (Ye et al., AGW)."""
    results = _evaluate_fields(embeddings, pids, camids, roles, modalities, ids, trials, device, protocol)
    return float(_mean(r.inp.mean() for _, r in results)) * 100.0


def _evaluate_fields(
    embeddings: Any, pids: Any, camids: Any, roles: Any, modalities: Any, ids: Any, trials: Any, device: str, params: dict[str, Any]
) -> list[tuple[Comparison, Ranking]]:
    unknown = sorted(set(params) - set(PROTOCOL_FIELDS))
    if unknown:
        raise UsageError(f"re-id metrics: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(PROTOCOL_FIELDS)}")
    table = SampleTable.build(pids, camids, roles, modalities, ids, trials)
    return evaluate_samples(embeddings, table, Protocol(**params), device)[0]


def evaluate_samples(
    embeddings: torch.Tensor, table: SampleTable, protocol: Protocol, device: str = "auto"
) -> tuple[list[tuple[Comparison, Ranking]], str]:
    """All comparisons of the protocol over the samples, on ``device`` (auto: cuda when available).

    ``embeddings`` is an (N, D) tensor or array, one row per entry of ``table``.
    """
    with torch.no_grad():
        return evaluate(torch.as_tensor(embeddings).detach().to(_device(device)), table, protocol)


def _device(device: str) -> str:
    try:
        return resolve_device(device)
    except UsageError as exc:
        raise UsageError(f"re-id metrics: {exc}") from None


def _mean(values: Any) -> torch.Tensor:
    return torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in values]).mean(0)


def _ap(ranking: Ranking, kind: str) -> torch.Tensor:
    return ranking.ap if kind == "noninterp" else ranking.ap_trapezoid


_CACHE: OrderedDict[tuple[Any, ...], tuple[list[torch.Tensor], tuple[list[tuple[Comparison, Ranking]], str]]] = OrderedDict()


def _shared_evaluation(
    embeddings: list[torch.Tensor], table: SampleTable, protocol: Protocol, device: str
) -> tuple[list[tuple[Comparison, Ranking]], str]:
    """Evaluate once per (embedding objects, sample fields, protocol, device); later callers reuse it."""
    key = (tuple(map(id, embeddings)), _table_digest(table), protocol, device)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key][1]
    result = evaluate_samples(torch.stack(embeddings), table, protocol, device)
    _CACHE[key] = (embeddings, result)
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return result


def _table_digest(table: SampleTable) -> str:
    digest = hashlib.sha256()
    for array in (table.pids, table.camids, table.roles, table.modalities, table.ids, table.groups):
        digest.update(b"-" if array is None else "\0".join(map(str, array.tolist())).encode())
        digest.update(b"\1")
    return digest.hexdigest()


class _ReidMetric(Metric):
    """Collects embeddings and sample fields; ranks them under the protocol at ``compute``."""

    outputs = frozenset({"embedding"})
    needs_target = False
    higher_is_better = True
    version = "1"
    paper = "Zheng et al. ICCV'15 (Market-1501); Wu et al. ICCV'17 (SYSU-MM01); Ye et al. TPAMI'21 (mINP)"
    options: ClassVar[tuple[Option, ...]] = PROTOCOL_OPTIONS

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.protocol = Protocol(**{name: self.config[name] for name in PROTOCOL_FIELDS})
        self.reset()

    def reset(self) -> None:
        self._embeddings: list[torch.Tensor] = []
        self._fields: dict[str, list[Any]] = {"pid": [], "camid": [], "role": [], "modality": [], "id": [], "trial": []}

    def update(self, predictions: list[Any], samples: list[Sample]) -> None:
        for prediction, sample in zip(predictions, samples, strict=True):
            self._embeddings.append(self._check_embedding(prediction, sample))
            for field in ("pid", "camid"):
                value = sample.get(field)
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                    raise DataError(f"{self.name}: sample {sample.get('id')!r} has {field}={value!r}; expected an int")
                self._fields[field].append(int(value))
            self._fields["role"].append(str(sample.get("role", "")))
            self._fields["modality"].append(str(sample.get("modality", "")))
            self._fields["id"].append(str(sample["id"]))
            self._fields["trial"].append(int(sample.get("trial", 0)))
        return None

    def _check_embedding(self, prediction: Any, sample: Sample) -> torch.Tensor:
        if not isinstance(prediction, torch.Tensor) or prediction.dim() != 1 or not prediction.is_floating_point():
            shape = tuple(prediction.shape) if isinstance(prediction, torch.Tensor) else type(prediction).__name__
            raise DataError(f"{self.name}: the prediction for sample {sample.get('id')!r} must be a 1-D float tensor; got {shape}")
        if self._embeddings and len(prediction) != len(self._embeddings[0]):
            raise DataError(
                f"{self.name}: the embedding of sample {sample.get('id')!r} has {len(prediction)} dimensions, "
                f"earlier ones {len(self._embeddings[0])}"
            )
        return prediction  # kept as is: its identity keys the shared evaluation cache

    def _results(self) -> tuple[list[tuple[Comparison, Ranking]], str]:
        if not self._embeddings:
            raise UsageError(f"{self.name}: no samples were scored")
        fields = self._fields
        table = SampleTable.build(fields["pid"], fields["camid"], fields["role"], fields["modality"], fields["id"], fields["trial"])
        device = self.config["device"] if self.config["device"] != "auto" else (self.device or "auto")
        return _shared_evaluation(self._embeddings, table, self.protocol, _device(device))

    def _common_details(self, results: list[tuple[Comparison, Ranking]], sampler: str) -> dict[str, Any]:
        return {
            "protocol": self.protocol.describe(),
            "gallery_sampler": sampler,
            "comparisons": len(results),
            "queries": results[0][1].n_queries,
            "valid_queries": [int(r.valid.sum()) for _, r in results],
            "gallery": [r.n_gallery for _, r in results],
        }

    def convention(self) -> dict[str, Any]:
        return {
            "implementation": f"harness_plugins.metrics.reid/{self.version}",
            "unit": "percent",
            "ranking": "stable sort of distances (ties keep gallery order, as MATLAB sort)",
            "distance_formula": "‖q‖²+‖g‖²−2q·g via addmm (torchreid), sqrt for euclidean, 1−q̂·ĝ for cosine",
            "invalid_queries": "skipped (not in the denominator)",
            "aggregation": "mean over queries, then mean over trials and trial groups",
            "torch": torch.__version__,
        }


class CMC(_ReidMetric):
    """Cumulative matching characteristic: share of queries whose first true match is within rank k."""

    name = "cmc"
    description = "CMC rank-k accuracy (%) under the dataset's re-id protocol; full curve in the record."
    options = PROTOCOL_OPTIONS + (
        Option("ranks", (1, 5, 10, 20), "ranks reported as columns", type=tuple),
        Option("max_rank", 50, "length of the CMC curve stored in the record"),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        try:
            ranks = tuple(int(rank) for rank in self.config["ranks"])
        except ValueError:
            raise UsageError(f"cmc: ranks must be integers, got {self.config['ranks']!r}") from None
        max_rank = self.config["max_rank"]
        if not ranks or min(ranks) < 1 or max(ranks) > max_rank:
            raise UsageError(f"cmc: ranks must lie in 1..max_rank={max_rank}; got {ranks}")
        self.config["ranks"] = ranks

    def _curves(self) -> tuple[torch.Tensor, list[torch.Tensor], list[tuple[Comparison, Ranking]], str]:
        results, sampler = self._results()
        curves = [ranking.cmc(self.config["max_rank"]) * 100.0 for _, ranking in results]
        return _mean(curves), curves, results, sampler

    def compute(self) -> dict[str, float]:
        curve = self._curves()[0]
        return {f"rank-{k}": float(curve[k - 1]) for k in self.config["ranks"]}

    def details(self) -> dict[str, Any]:
        curve, curves, results, sampler = self._curves()
        trials = [
            {"group": c.group, "trial": c.trial, **{f"rank-{k}": float(t[k - 1]) for k in self.config["ranks"]}}
            for (c, _), t in zip(results, curves, strict=True)
        ]
        ranks = self._first_match_ranks(results)
        per_sample = {
            f"rank-{k}": {qid: 100.0 * sum(r <= k for r in found) / len(found) for qid, found in ranks.items()}
            for k in self.config["ranks"]
        }
        return {**self._common_details(results, sampler), "cmc": curve.tolist(), "trials": trials,
                "first_match_rank": ranks, "per_sample": per_sample}

    def _first_match_ranks(self, results: list[tuple[Comparison, Ranking]]) -> dict[str, list[int]]:
        """Rank of the first true match of every valid query, one entry per trial it took part in.

        Rank-k is the mean over queries of 100·[rank ≤ k], so these are the per-query values a
        bootstrap over queries resamples.
        """
        found: dict[int, list[int]] = {}
        for comparison, ranking in results:
            valid_queries = comparison.query[ranking.valid.numpy()]
            for index, rank in zip(valid_queries, ranking.first_rank.tolist(), strict=True):
                found.setdefault(int(index), []).append(int(rank))
        ids = self._fields["id"]
        return {ids[i]: ranks for i, ranks in sorted(found.items())}

    def convention(self) -> dict[str, Any]:
        cmc_kind = (
            "identity-de-duplicated (first occurrence of each identity, SYSU-MM01 official)"
            if self.protocol.dedup else "image-level first true match, cumulative, clipped at 1 (torchreid)"
        )
        return {**super().convention(), "cmc": cmc_kind}


class MAP(_ReidMetric):
    """Mean average precision over the valid queries, on the non-de-duplicated ranking."""

    name = "map"
    description = "mAP (%) under the dataset's re-id protocol (non-interpolated, or the official Market trapezoid)."
    options = PROTOCOL_OPTIONS + (
        Option(
            "ap", "noninterp",
            "noninterp: mean precision at each hit (torchreid, SYSU); trapezoid: official Market-1501 script",
            choices=AP_KINDS,
        ),
    )

    def compute(self) -> dict[str, float]:
        results, _ = self._results()
        return {"mAP": float(_mean(_ap(r, self.config["ap"]).mean() for _, r in results)) * 100.0}

    def details(self) -> dict[str, Any]:
        results, sampler = self._results()
        trials = [{"group": c.group, "trial": c.trial, "mAP": float(_ap(r, self.config["ap"]).mean()) * 100.0} for c, r in results]
        per_query = self._per_query(results)
        return {**self._common_details(results, sampler), "trials": trials, "ap_per_query": per_query,
                "per_sample": {"mAP": per_query}}

    def _per_query(self, results: list[tuple[Comparison, Ranking]]) -> dict[str, float]:
        """AP (%) of every valid query, averaged over the trials it took part in."""
        totals: dict[int, list[float]] = {}
        for comparison, ranking in results:
            valid_queries = comparison.query[ranking.valid.numpy()]
            for index, value in zip(valid_queries, _ap(ranking, self.config["ap"]).tolist(), strict=True):
                totals.setdefault(int(index), []).append(value)
        ids = self._fields["id"]
        return {ids[i]: 100.0 * sum(v) / len(v) for i, v in sorted(totals.items())}

    def convention(self) -> dict[str, Any]:
        ap = (
            "non-interpolated: mean over hits t of t / rank_t (torchreid eval_market1501, SYSU get_map_multi_cam)"
            if self.config["ap"] == "noninterp"
            else "trapezoid: mean over hits of (precision + previous precision) / 2 (official Market-1501, layumi compute_mAP)"
        )
        return {**super().convention(), "ap": ap}


class MINP(_ReidMetric):
    """Mean inverse negative penalty: matches / rank of the hardest match (Ye et al., TPAMI 2021)."""

    name = "minp"
    description = "mINP (%) under the dataset's re-id protocol (AGW definition, non-de-duplicated ranking)."

    def compute(self) -> dict[str, float]:
        results, _ = self._results()
        return {"mINP": float(_mean(r.inp.mean() for _, r in results)) * 100.0}

    def details(self) -> dict[str, Any]:
        results, sampler = self._results()
        trials = [{"group": c.group, "trial": c.trial, "mINP": float(r.inp.mean()) * 100.0} for c, r in results]
        return {**self._common_details(results, sampler), "trials": trials}


@hookimpl
def harness_register_metrics(register: Callable[[type], None]) -> None:
    register(CMC)
    register(MAP)
    register(MINP)
