"""Re-identification evaluation core: which samples are queried against which, and the ranking.

Three reference protocols, each reproduced from its reference code:

* ``market1501`` — torchreid ``eval_market1501``: query/gallery from the samples' ``role``; for each
  query the gallery images of the same person *and* the same camera are dropped, junk (pid −1) is
  dropped, distractors (pid 0) stay as negatives; queries without a true match are skipped.
* ``regdb`` — ``eval_regdb`` of mangye16/Cross-Modal-Re-ID-baseline: query = visible images, gallery
  = thermal ones (``direction="t2v"`` swaps them); nothing is excluded.
* ``sysu`` — the official SYSU-MM01 MATLAB evaluation (wuancong/SYSU-MM01 ``evaluation/*.m``): IR
  queries from cameras 3 and 6; the gallery holds, per trial, ``shot`` images of every
  (camera, person) of cameras 1, 2, 4, 5 (``all``) or 1, 2 (``indoor``), picked by the official
  ``rand_perm_cam.mat`` or a seeded sampler; camera-3 queries skip camera-2 gallery images (same
  location); CMC counts identities, not images (first occurrence of each identity in the ranking).

Samples may carry an integer ``trial`` (e.g. RegDB's 10 splits, each scored with its own model):
every trial group is evaluated on its own and the results are averaged, as the papers do.

Everything is reduced to the ranks of the true matches. Per block of queries the distances are
computed on the device; each row is sorted once (values only) and the query's own-identity entries —
a few dozen per row — are located in it by binary search, with equal distances kept in gallery order
(a stable sort, as MATLAB's ``sort``). CMC, both AP definitions and INP follow from those ranks with
tensor operations: no per-query Python loop, and no full argsort of the gallery.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import DataError, UsageError

PROTOCOLS = ("market1501", "regdb", "sysu")
DISTANCES = ("sqeuclidean", "euclidean", "cosine")
SAMPLERS = ("auto", "official", "seeded")
DIRECTIONS = ("v2t", "t2v")
JUNK_PID = -1
VISIBLE = frozenset({"visible", "rgb"})
THERMAL = frozenset({"thermal", "infrared", "ir"})
SYSU_QUERY_CAMS = (3, 6)
SYSU_GALLERY_CAMS = {"all": (1, 2, 4, 5), "indoor": (1, 2)}
SYSU_SHOTS = {"single": 1, "multi": 10}
SYSU_LOCATION = {3: 2}
"""``cam_id = [1 2 2 4 5 6]`` in the official code: IR camera 3 stands where RGB camera 2 does."""
BLOCK_ELEMENTS = 1 << 22
"""Query rows per block × gallery size: bounds the memory of one block (about 10 bytes per element)."""


@dataclasses.dataclass(frozen=True)
class Protocol:
    """The parameters that decide which pairs are compared and how (all recorded with results)."""

    protocol: str = "market1501"
    distance: str = "sqeuclidean"
    normalize: bool = False
    direction: str = "v2t"
    mode: str = "all"
    shot: str = "single"
    trials: int = 10
    sampler: str = "auto"
    perm_file: str = ""
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in (
            ("protocol", PROTOCOLS), ("distance", DISTANCES), ("direction", DIRECTIONS),
            ("mode", tuple(SYSU_GALLERY_CAMS)), ("shot", tuple(SYSU_SHOTS)), ("sampler", SAMPLERS),
        ):
            if getattr(self, name) not in allowed:
                raise UsageError(f"re-id protocol: {name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        if self.trials < 1:
            raise UsageError(f"re-id protocol: trials must be at least 1; got {self.trials}")

    @property
    def dedup(self) -> bool:
        """SYSU-MM01's CMC ranks identities (first occurrence of each), not images."""
        return self.protocol == "sysu"

    def describe(self) -> dict[str, Any]:
        """The settings that actually apply to this protocol, in words, for the record."""
        common = {
            "protocol": self.protocol,
            "distance": self.distance + (" on L2-normalised features" if self.normalize else ""),
            "cmc": "identity-de-duplicated" if self.dedup else "image-level",
        }
        if self.protocol == "market1501":
            return {**common, "query": "role == 'query'", "gallery": "role == 'gallery'",
                    "excluded": "same pid and same camera as the query; pid -1 (junk)"}
        if self.protocol == "regdb":
            query, gallery = ("visible", "thermal") if self.direction == "v2t" else ("thermal", "visible")
            return {**common, "query": query, "gallery": gallery, "excluded": "nothing"}
        return {
            **common, "mode": self.mode, "shot": self.shot, "trials": self.trials,
            "query": f"cameras {SYSU_QUERY_CAMS}",
            "gallery": f"{SYSU_SHOTS[self.shot]} image(s) per person per camera of {SYSU_GALLERY_CAMS[self.mode]}",
            "excluded": "camera-2 gallery images for camera-3 queries",
        }


@dataclasses.dataclass(frozen=True)
class SampleTable:
    """What the protocols need to know about the scored samples, as flat arrays (one entry each)."""

    pids: np.ndarray
    camids: np.ndarray
    roles: np.ndarray | None = None
    modalities: np.ndarray | None = None
    ids: np.ndarray | None = None
    groups: np.ndarray | None = None

    @classmethod
    def build(
        cls,
        pids: Any,
        camids: Any,
        roles: Sequence[str] | None = None,
        modalities: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        groups: Any = None,
    ) -> SampleTable:
        pids_array = np.asarray(_numpy(pids), dtype=np.int64).reshape(-1)
        n = len(pids_array)
        arrays = {
            "camids": np.asarray(_numpy(camids), dtype=np.int64).reshape(-1),
            "roles": None if roles is None else np.asarray(list(roles), dtype=str),
            "modalities": None if modalities is None else np.asarray([str(m).lower() for m in modalities], dtype=str),
            "ids": None if ids is None else np.asarray([str(i) for i in ids], dtype=str),
            "groups": None if groups is None else np.asarray(_numpy(groups), dtype=np.int64).reshape(-1),
        }
        for name, array in arrays.items():
            if array is not None and len(array) != n:
                raise UsageError(f"re-id evaluation: {name} has {len(array)} entries for {n} samples")
        return cls(pids_array, **arrays)

    def __len__(self) -> int:
        return len(self.pids)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One query set against one gallery (one trial); indices into the `SampleTable`."""

    group: int
    trial: int
    query: np.ndarray
    gallery: np.ndarray


@dataclasses.dataclass(frozen=True)
class Ranking:
    """Where the true matches of each valid query landed (1-based ranks after the exclusions)."""

    n_queries: int
    n_gallery: int
    valid: torch.Tensor
    """(n_queries,) bool: queries with at least one true match; the others are skipped."""
    first_rank: torch.Tensor
    """(n_valid,) rank of the first true match (counting identities when de-duplicated)."""
    ap: torch.Tensor
    """(n_valid,) float64 non-interpolated AP: mean over hits t of t / rank_t (torchreid, SYSU)."""
    ap_trapezoid: torch.Tensor
    """(n_valid,) float64 trapezoid AP of the official Market-1501 script (Oxford ``compute_ap``)."""
    inp: torch.Tensor
    """(n_valid,) float64 inverse negative penalty: #matches / rank of the hardest match."""

    def cmc(self, max_rank: int) -> torch.Tensor:
        """(max_rank,) float64 fraction of valid queries whose first match is within rank k."""
        counts = torch.bincount(self.first_rank.clamp(max=max_rank + 1) - 1, minlength=max_rank + 1)
        return counts[:max_rank].cumsum(0).double() / max(len(self.first_rank), 1)


def plan(table: SampleTable, protocol: Protocol) -> tuple[list[Comparison], str]:
    """The comparisons a protocol makes over the samples, and the gallery sampler actually used."""
    groups = table.groups if table.groups is not None else np.zeros(len(table), dtype=np.int64)
    comparisons: list[Comparison] = []
    sampler = "none"
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        if protocol.protocol == "market1501":
            query, gallery = _split_by_role(table, members)
            comparisons.append(Comparison(int(group), 0, query, gallery))
        elif protocol.protocol == "regdb":
            query, gallery = _split_by_modality(table, members, protocol.direction)
            comparisons.append(Comparison(int(group), 0, query, gallery))
        else:
            query = members[np.isin(table.camids[members], SYSU_QUERY_CAMS)]
            candidates = members[np.isin(table.camids[members], SYSU_GALLERY_CAMS[protocol.mode])]
            galleries, sampler = sysu_galleries(table, candidates, protocol)
            comparisons.extend(Comparison(int(group), t, query, g) for t, g in enumerate(galleries))
    for comparison in comparisons:
        if len(comparison.query) == 0 or len(comparison.gallery) == 0:
            empty = "query" if len(comparison.query) == 0 else "gallery"
            raise DataError(
                f"re-id protocol {protocol.protocol!r}: the {empty} set of trial group {comparison.group} is empty "
                f"(it is chosen by {protocol.describe()[empty]}); check the samples' role/camid/modality fields"
            )
    return comparisons, sampler


def _split_by_role(table: SampleTable, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if table.roles is None:
        raise UsageError("re-id protocol 'market1501' needs each sample's role ('query' or 'gallery')")
    roles = table.roles[members]
    unknown = sorted(set(roles.tolist()) - {"query", "gallery"})
    if unknown:
        raise DataError(f"re-id protocol 'market1501': samples have role(s) {unknown}; expected 'query' or 'gallery'")
    return members[roles == "query"], members[roles == "gallery"]


def _split_by_modality(table: SampleTable, members: np.ndarray, direction: str) -> tuple[np.ndarray, np.ndarray]:
    if table.modalities is None:
        raise UsageError("re-id protocol 'regdb' needs each sample's modality ('visible' or 'thermal')")
    modalities = table.modalities[members]
    unknown = sorted(set(modalities.tolist()) - VISIBLE - THERMAL)
    if unknown:
        raise DataError(f"re-id protocol 'regdb': unknown modality {unknown}; expected 'visible' or 'thermal'/'infrared'")
    visible = np.isin(modalities, sorted(VISIBLE))
    query, gallery = (visible, ~visible) if direction == "v2t" else (~visible, visible)
    return members[query], members[gallery]


def sysu_galleries(table: SampleTable, candidates: np.ndarray, protocol: Protocol) -> tuple[list[np.ndarray], str]:
    """Per trial, the gallery: the first ``shot`` images of each (camera, person) under a permutation.

    The i-th image of a (camera, person) is the i-th in sample-id order (the official features list
    ``camC/PPPP/*.jpg`` in file order). Permutations come from ``rand_perm_cam.mat`` (row ``trial`` of
    ``rand_perm_cam{cam}{pid}``) or from ``numpy.random.default_rng([seed, trial])``.
    """
    perm_path = Path(protocol.perm_file).expanduser() if protocol.perm_file else None
    if protocol.sampler == "official" and (perm_path is None or not perm_path.is_file()):
        raise DataError(
            f"re-id protocol 'sysu' with sampler='official' needs perm_file= the official rand_perm_cam.mat "
            f"(wuancong/SYSU-MM01 evaluation/data_split/); got {protocol.perm_file or 'none'!r}"
        )
    official = protocol.sampler != "seeded" and perm_path is not None and perm_path.is_file()
    perms = read_rand_perm_cam(perm_path) if official else None
    shot = SYSU_SHOTS[protocol.shot]
    ids = table.ids if table.ids is not None else np.char.zfill(np.arange(len(table)).astype(str), 12)
    keys = np.stack([table.camids[candidates], table.pids[candidates]], axis=1)
    groups: dict[tuple[int, int], np.ndarray] = {}
    for cam, pid in sorted({(int(c), int(p)) for c, p in keys}):
        members = candidates[(keys[:, 0] == cam) & (keys[:, 1] == pid)]
        groups[cam, pid] = members[np.argsort(ids[members], kind="stable")]
    galleries = []
    for trial in range(protocol.trials):
        rng = None if official else np.random.default_rng([protocol.seed, trial])
        chosen = []
        for (cam, pid), members in groups.items():
            if perms is not None:
                order = _official_order(perms, cam, pid, trial, len(members), perm_path)
            else:
                order = rng.permutation(len(members))
            chosen.append(members[order[:shot]])
        galleries.append(np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64))
    return galleries, ("official rand_perm_cam.mat" if official else f"seeded numpy default_rng([{protocol.seed}, trial])")


def read_rand_perm_cam(path: Path) -> list[list[np.ndarray | None]]:
    """The official permutations: ``[cam - 1][pid - 1]`` → (trials, n_images) 0-based, or None if absent.

    ``rand_perm_cam`` is a 6-element MATLAB cell (one per camera) of cells over person ids, each a
    trials × n_images double matrix of 1-based indices (empty where the person is not in the camera).
    """
    import scipy.io

    try:
        content = scipy.io.loadmat(str(path))
    except (OSError, ValueError, NotImplementedError, scipy.io.matlab.MatReadError) as exc:
        raise DataError(f"cannot read SYSU-MM01 permutation file {path}: {exc} (expected MATLAB v5/v7 rand_perm_cam.mat)") from None
    if "rand_perm_cam" not in content:
        raise DataError(f"{path} holds no variable 'rand_perm_cam' (found: {', '.join(k for k in content if not k.startswith('__'))})")
    cameras = []
    for camera in np.asarray(content["rand_perm_cam"], dtype=object).ravel():
        people: list[np.ndarray | None] = []
        for matrix in np.asarray(camera, dtype=object).ravel():
            array = np.asarray(matrix, dtype=np.float64)
            people.append(None if array.size == 0 else array.reshape(array.shape[0], -1).astype(np.int64) - 1)
        cameras.append(people)
    return cameras


def _official_order(perms: list[list[np.ndarray | None]], cam: int, pid: int, trial: int, n: int, path: Path | None) -> np.ndarray:
    people = perms[cam - 1] if 0 < cam <= len(perms) else []
    matrix = people[pid - 1] if 0 < pid <= len(people) else None
    if matrix is None:
        raise DataError(f"{path}: rand_perm_cam has no permutation for camera {cam}, person {pid} ({n} gallery images given)")
    if trial >= matrix.shape[0]:
        raise DataError(f"{path}: rand_perm_cam{{{cam}}}{{{pid}}} has {matrix.shape[0]} trials; trial {trial + 1} was asked for")
    row = matrix[trial]
    if len(row) != n or not np.array_equal(np.sort(row), np.arange(n)):
        raise DataError(
            f"{path}: rand_perm_cam{{{cam}}}{{{pid}}} permutes {len(row)} images but the samples hold {n} for "
            f"camera {cam}, person {pid} (the dataset and the permutation file disagree)"
        )
    return row


def rank_matches(
    query: torch.Tensor | None,
    gallery: torch.Tensor | None,
    q_pids: Any,
    g_pids: Any,
    q_cams: Any,
    g_cams: Any,
    *,
    protocol: str = "market1501",
    dedup: bool | None = None,
    distance: str = "sqeuclidean",
    normalize: bool = False,
    distmat: torch.Tensor | None = None,
) -> Ranking:
    """Rank the gallery for every query and locate the true matches under a protocol's exclusions.

    Give features (``query`` (Q, D), ``gallery`` (G, D)) or a precomputed ``distmat`` (Q, G) —
    smaller is closer. Runs on the device of the features (or of ``distmat``), block by block.
    Exclusions that do not depend on the query's identity are applied by leaving gallery columns out:
    junk for ``market1501``, and for ``sysu`` the columns at the query camera's location, per group
    of queries sharing a location. What is left is the same-identity same-camera rule of
    ``market1501``, handled among the query's own identity.
    """
    source = distmat if distmat is not None else query
    if source is None:
        raise UsageError("rank_matches: give query and gallery features, or a distance matrix")
    device = source.device
    q_pids, g_pids, q_cams, g_cams = (
        torch.as_tensor(_numpy(t), device=device).long().reshape(-1) for t in (q_pids, g_pids, q_cams, g_cams)
    )
    n_q, n_g = len(q_pids), len(g_pids)
    if n_q == 0 or n_g == 0:
        raise DataError(f"rank_matches: {n_q} queries and {n_g} gallery items; both must be non-empty")
    if distmat is None:
        query, gallery = _prepare_features(query, gallery, distance, normalize)
    elif distmat.shape != (n_q, n_g):
        raise DataError(f"rank_matches: distance matrix {tuple(distmat.shape)} for {n_q} queries × {n_g} gallery items")
    if not bool(torch.isfinite(source).all()) or (gallery is not None and not bool(torch.isfinite(gallery).all())):
        raise DataError("rank_matches: the features or distances contain NaN or infinity")
    dedup = protocol == "sysu" if dedup is None else dedup
    same_camera = protocol == "market1501"
    columns = torch.arange(n_g, device=device)
    if protocol == "market1501":
        columns = columns[g_pids != JUNK_PID]
    stats = [torch.zeros(n_q, dtype=dtype, device=device) for dtype in (torch.bool, torch.int64, *[torch.float64] * 3)]
    for q_index, g_index in _partitions(protocol, q_cams, g_cams, columns):
        g_p, g_c = g_pids[g_index], g_cams[g_index]
        g_f = gallery[g_index] if distmat is None else None
        g_sq = g_f.pow(2).sum(1) if g_f is not None else None
        rows = max(1, BLOCK_ELEMENTS // max(len(g_index), 1))
        for start in range(0, len(q_index), rows):
            block = q_index[start : start + rows]
            if distmat is None:
                dist = _distance_block(query[block], g_f, g_sq, distance)
            else:
                dist = distmat[block][:, g_index]
            results = _rank_block(dist, q_pids[block], g_p, q_cams[block], g_c, same_camera, dedup)
            for stat, value in zip(stats, results, strict=True):
                stat[block] = value
    valid = stats[0]
    return Ranking(n_q, n_g, valid.cpu(), *(stat[valid].cpu() for stat in stats[1:]))


def _partitions(
    protocol: str, q_cams: torch.Tensor, g_cams: torch.Tensor, columns: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(queries, gallery columns) groups; SYSU groups the queries by location and drops that location."""
    if protocol != "sysu":
        return [(torch.arange(len(q_cams), device=q_cams.device), columns)]
    q_location, g_location = _location(q_cams), _location(g_cams[columns])
    return [
        (torch.nonzero(q_location == location).squeeze(1), columns[g_location != location])
        for location in torch.unique(q_location)
    ]


def _prepare_features(
    query: torch.Tensor, gallery: torch.Tensor | None, distance: str, normalize: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    if gallery is None or query.dim() != 2 or gallery.dim() != 2 or query.shape[1] != gallery.shape[1]:
        shapes = (tuple(query.shape), None if gallery is None else tuple(gallery.shape))
        raise DataError(f"re-id features must be (N, D) with one D for query and gallery; got {shapes}")
    dtype = torch.promote_types(torch.promote_types(query.dtype, gallery.dtype), torch.float32)
    query, gallery = query.to(dtype), gallery.to(device=query.device, dtype=dtype)
    if normalize or distance == "cosine":
        query = torch.nn.functional.normalize(query, dim=1)
        gallery = torch.nn.functional.normalize(gallery, dim=1)
    return query, gallery


def _distance_block(query: torch.Tensor, gallery: torch.Tensor, g_sq: torch.Tensor, distance: str) -> torch.Tensor:
    """torchreid's formulas: ‖q‖² + ‖g‖² − 2q·g (addmm) for Euclidean, 1 − q̂·ĝ for cosine."""
    if distance == "cosine":
        return 1.0 - query @ gallery.T
    block = query.pow(2).sum(1, keepdim=True) + g_sq.unsqueeze(0)
    block.addmm_(query, gallery.T, beta=1, alpha=-2)
    return block.clamp_(min=0).sqrt_() if distance == "euclidean" else block


def _sorted_rows(dist: torch.Tensor) -> torch.Tensor:
    """Each row's distances in ascending order (numpy's SIMD sort on CPU, torch's on GPU)."""
    if dist.device.type == "cpu":
        return torch.from_numpy(np.sort(dist.contiguous().numpy(), axis=1))
    return torch.sort(dist, dim=1).values


def _positions(dist: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
    """0-based position of entries (rows, cols) in their row's stable ascending order.

    The number of smaller distances comes from a binary search in the sorted row; an entry that has
    equal distances elsewhere in its row also counts those at smaller column indices (ties keep
    gallery order), so the result equals a stable argsort without sorting indices.
    """
    values = dist[rows, cols]
    padded = torch.full((len(dist), int(slot.max()) + 1), float("inf"), dtype=dist.dtype, device=dist.device)
    padded[rows, slot] = values
    ordered = _sorted_rows(dist).to(dist.device)
    below = torch.searchsorted(ordered, padded)[rows, slot]
    tied = torch.searchsorted(ordered, padded, right=True)[rows, slot] - below > 1
    if bool(tied.any()):
        t_rows, t_cols, t_values = rows[tied], cols[tied], values[tied]
        earlier = torch.arange(dist.shape[1], device=dist.device).unsqueeze(0) < t_cols.unsqueeze(1)
        below[tied] += ((dist[t_rows] == t_values.unsqueeze(1)) & earlier).sum(1)
    return below


def _rank_block(
    dist: torch.Tensor,
    q_pids: torch.Tensor,
    g_pids: torch.Tensor,
    q_cams: torch.Tensor,
    g_cams: torch.Tensor,
    same_camera: bool,
    dedup: bool,
) -> tuple[torch.Tensor, ...]:
    """Per query of the block: valid, first-match rank, AP, trapezoid AP and INP (zeros if invalid)."""
    n_rows, device = len(dist), dist.device
    rows, cols = torch.nonzero(g_pids.unsqueeze(0) == q_pids.unsqueeze(1), as_tuple=True)  # the query's identity
    per_row = torch.bincount(rows, minlength=n_rows)
    slot = torch.arange(len(rows), device=device) - (torch.cumsum(per_row, 0) - per_row)[rows]
    empty = [torch.zeros(n_rows, dtype=dtype, device=device) for dtype in (torch.bool, torch.int64, *[torch.float64] * 3)]
    if len(rows) == 0:
        return tuple(empty)
    position = _positions(dist, rows, cols, slot)
    order = torch.argsort(rows * (dist.shape[1] + 1) + position)  # each query's own-identity entries, best first
    rows, cols, position = rows[order], cols[order], position[order]
    excluded = (g_cams[cols] == q_cams[rows]) if same_camera else torch.zeros_like(rows, dtype=torch.bool)
    excluded_before = _segment_cumsum(excluded, rows, per_row) - excluded.long()
    hit = ~excluded
    rows, position, excluded_before = rows[hit], position[hit], excluded_before[hit]
    n_hits = torch.bincount(rows, minlength=n_rows)
    valid = n_hits > 0
    hit_rank = (position + 1 - excluded_before).double()  # 1-based rank among the kept gallery entries
    hit_index = (_segment_cumsum(torch.ones_like(rows), rows, n_hits) - 1).double()
    precision = (hit_index + 1) / hit_rank
    previous = torch.where(hit_rank > 1, hit_index / (hit_rank - 1).clamp(min=1), torch.ones_like(hit_rank))
    denominator = n_hits.clamp(min=1).double()
    ap = empty[2].index_add_(0, rows, precision) / denominator
    ap_trapezoid = empty[3].index_add_(0, rows, (previous + precision) / 2) / denominator
    last = empty[4].scatter_reduce_(0, rows, hit_rank, "amax")
    inp = n_hits.double() / last.clamp(min=1)
    first = empty[1]
    is_first = hit_index == 0
    first[rows[is_first]] = hit_rank[is_first].long()
    if dedup:
        first = _identity_rank(dist, g_pids, q_pids, rows[is_first], cols[hit][is_first], first)
    return valid, first, ap, ap_trapezoid, inp


def _segment_cumsum(values: torch.Tensor, rows: torch.Tensor, per_row: torch.Tensor) -> torch.Tensor:
    """Inclusive cumulative sum of ``values`` restarting at every row (entries grouped by row)."""
    total = torch.cumsum(values.long(), 0)
    starts = torch.cumsum(per_row, 0) - per_row
    offset = torch.cat([torch.zeros(1, dtype=total.dtype, device=total.device), total])[starts]
    return total - offset[rows]


def _location(cams: torch.Tensor) -> torch.Tensor:
    located = cams.clone()
    for camera, location in SYSU_LOCATION.items():
        located[cams == camera] = location
    return located


def _identity_rank(
    dist: torch.Tensor, g_pids: torch.Tensor, q_pids: torch.Tensor, rows: torch.Tensor, first_cols: torch.Tensor, first: torch.Tensor
) -> torch.Tensor:
    """Rank of the first true match among identities (MATLAB ``unique(..., 'stable')`` of the ranking).

    An identity comes before the match when its closest image does (ties: the smaller column first).
    """
    identities, codes = torch.unique(g_pids, return_inverse=True)
    n_rows, n_g = dist.shape
    columns = torch.arange(n_g, device=dist.device)
    best = torch.full((n_rows, len(identities)), float("inf"), dtype=dist.dtype, device=dist.device)
    best.scatter_reduce_(1, codes.expand(n_rows, n_g), dist, "amin")
    at_best = dist == best.gather(1, codes.expand(n_rows, n_g))
    best_col = torch.full((n_rows, len(identities)), n_g, device=dist.device)
    best_col.scatter_reduce_(1, codes.expand(n_rows, n_g), torch.where(at_best, columns, n_g), "amin")
    match_dist, match_col = dist[rows, first_cols].unsqueeze(1), first_cols.unsqueeze(1)
    before = (best[rows] < match_dist) | ((best[rows] == match_dist) & (best_col[rows] < match_col))
    own = identities.unsqueeze(0) == q_pids[rows].unsqueeze(1)
    ranked = first.clone()
    ranked[rows] = (before & ~own).sum(1) + 1
    return ranked


def evaluate(features: torch.Tensor, table: SampleTable, protocol: Protocol) -> tuple[list[tuple[Comparison, Ranking]], str]:
    """Every comparison of the protocol, ranked; plus the gallery sampler used (SYSU-MM01)."""
    if features.dim() != 2 or len(features) != len(table):
        raise DataError(f"re-id evaluation: expected one embedding per sample, (N={len(table)}, D); got {tuple(features.shape)}")
    comparisons, sampler = plan(table, protocol)
    device = features.device
    pids = torch.as_tensor(table.pids, device=device)
    cams = torch.as_tensor(table.camids, device=device)
    results = []
    for comparison in comparisons:
        q = torch.as_tensor(comparison.query, device=device)
        g = torch.as_tensor(comparison.gallery, device=device)
        ranking = rank_matches(
            features[q], features[g], pids[q], pids[g], cams[q], cams[g],
            protocol=protocol.protocol, dedup=protocol.dedup, distance=protocol.distance, normalize=protocol.normalize,
        )
        if not bool(ranking.valid.any()):
            raise DataError(
                f"re-id protocol {protocol.protocol!r}: no query of trial group {comparison.group} has a true match "
                f"in the gallery ({len(comparison.query)} queries, {len(comparison.gallery)} gallery images)"
            )
        results.append((comparison, ranking))
    return results, sampler


def _numpy(values: Any) -> Any:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values
