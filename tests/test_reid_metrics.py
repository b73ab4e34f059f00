"""Re-id metrics: torchreid conformance (Market-1501), slow reference evaluators written from the
official SYSU-MM01 MATLAB code and the AGW `eval_regdb`, hand-computed AP/INP, and the metric plugins."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.io
import torch
from harness_plugins.metrics import reid
from harness_plugins.metrics.reid import cmc, mean_ap, mean_inp
from harness_plugins.metrics.reid_protocols import (
    Protocol,
    SampleTable,
    rank_matches,
    read_rand_perm_cam,
)

import harness
from harness import DataError, UsageError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # torchreid warns that its Cython evaluator is not compiled
    from torchreid.reid.metrics import rank as torchreid_rank
    from torchreid.reid.metrics.distance import compute_distance_matrix

SYSU_LOCATION = {1: 1, 2: 2, 3: 2, 4: 4, 5: 5, 6: 6}  # cam_id = [1 2 2 4 5 6] in evaluation_SYSU_MM01.m


# ---------------------------------------------------------------------------------------------
# Slow, obviously-correct reference evaluators (one query at a time, plain Python lists).
# ---------------------------------------------------------------------------------------------
def slow_rank_lists(dist_row, g_pids, keep):
    """Gallery pids in ascending distance (ties by gallery order), keeping entries where keep(j)."""
    order = sorted(range(len(dist_row)), key=lambda j: (dist_row[j], j))
    return [g_pids[j] for j in order if keep(j)]


def slow_scores(ranked_pids, q_pid, dedup):
    """(first-match rank or None, non-interpolated AP, INP) for one query's ranked pid list."""
    hits = [k + 1 for k, pid in enumerate(ranked_pids) if pid == q_pid]
    if not hits:
        return None, None, None
    ap = sum((t + 1) / r for t, r in enumerate(hits)) / len(hits)
    inp = len(hits) / hits[-1]
    if dedup:
        unique = []
        for pid in ranked_pids:
            if pid not in unique:
                unique.append(pid)
        first = unique.index(q_pid) + 1
    else:
        first = hits[0]
    return first, ap, inp


def slow_evaluate(dist, q_pids, g_pids, q_cams, g_cams, rule, dedup, max_rank=20):
    """CMC curve (fractions), mAP, mINP over the valid queries, as the reference code loops."""
    firsts, aps, inps = [], [], []
    for i in range(len(q_pids)):
        def keep(j, i=i):
            if rule == "sysu":
                return SYSU_LOCATION[g_cams[j]] != SYSU_LOCATION[q_cams[i]]
            if rule == "market1501":
                return g_pids[j] != -1 and not (g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i])
            return True  # eval_regdb: two cameras, nothing removed

        first, ap, inp = slow_scores(slow_rank_lists(list(dist[i]), list(g_pids), keep), q_pids[i], dedup)
        if first is not None:
            firsts.append(first)
            aps.append(ap)
            inps.append(inp)
    curve = [sum(f <= k for f in firsts) / len(firsts) for k in range(1, max_rank + 1)]
    return np.array(curve), float(np.mean(aps)), float(np.mean(inps))


def euclidean(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


# ---------------------------------------------------------------------------------------------
# Market-1501 against torchreid
# ---------------------------------------------------------------------------------------------
def market_problem(seed, n_q=120, n_g=900, dim=32):
    rng = np.random.default_rng(seed)
    n_ids = 40
    centres = rng.normal(size=(n_ids + 1, dim))
    q_pids = rng.integers(1, n_ids + 1, n_q)
    g_pids = rng.integers(0, n_ids + 1, n_g)
    g_pids[rng.random(n_g) < 0.1] = -1  # junk
    q_cams, g_cams = rng.integers(1, 7, n_q), rng.integers(1, 7, n_g)
    q_f = centres[q_pids] + 1.5 * rng.normal(size=(n_q, dim))
    g_f = centres[np.maximum(g_pids, 0)] + 1.5 * rng.normal(size=(n_g, dim))
    return q_f.astype(np.float32), g_f.astype(np.float32), q_pids, g_pids, q_cams, g_cams


def torchreid_eval(dist, q_pids, g_pids, q_cams, g_cams, max_rank=50):
    """torchreid drops junk (pid −1) when it loads Market-1501, then runs eval_market1501."""
    keep = g_pids != -1
    return torchreid_rank.evaluate_rank(
        np.asarray(dist)[:, keep], q_pids, g_pids[keep], q_cams, g_cams[keep], max_rank=max_rank, use_cython=False
    )


def test_torchreid_cython_is_not_compiled_here():
    """Documents which torchreid path the conformance tests compare with (the Python one)."""
    assert torchreid_rank.IS_CYTHON_AVAI is False


@pytest.mark.parametrize("seed", [0, 1])
def test_market_distmat_matches_torchreid_eval_market1501(seed):
    q_f, g_f, q_pids, g_pids, q_cams, g_cams = market_problem(seed)
    dist = torch.from_numpy(euclidean(q_f.astype(np.float64), g_f.astype(np.float64)))
    ranking = rank_matches(None, None, q_pids, g_pids, q_cams, g_cams, protocol="market1501", distmat=dist)
    ref_cmc, ref_map = torchreid_eval(dist.numpy(), q_pids, g_pids, q_cams, g_cams)
    assert 0.2 < ref_map < 0.95  # a non-trivial problem
    np.testing.assert_allclose(ranking.cmc(50).numpy(), ref_cmc, atol=1e-6)  # torchreid sums in float32
    assert abs(float(ranking.ap.mean()) - ref_map) < 1e-12


def test_market_features_match_torchreid_from_features():
    q_f, g_f, q_pids, g_pids, q_cams, g_cams = market_problem(2)
    q_pids[:3] = 999  # queries whose identity is absent from the gallery are skipped by both
    dist = compute_distance_matrix(torch.from_numpy(q_f), torch.from_numpy(g_f), metric="euclidean").numpy()
    ref_cmc, ref_map = torchreid_eval(dist, q_pids, g_pids, q_cams, g_cams)
    feats = torch.from_numpy(np.concatenate([q_f, g_f]))
    pids, cams = np.concatenate([q_pids, g_pids]), np.concatenate([q_cams, g_cams])
    roles = ["query"] * len(q_f) + ["gallery"] * len(g_f)
    ours = cmc(feats, pids, cams, roles, protocol="market1501", device="cpu")
    np.testing.assert_allclose(ours.numpy() / 100, ref_cmc, atol=1e-6)
    assert mean_ap(feats, pids, cams, roles, protocol="market1501", device="cpu") == pytest.approx(ref_map * 100, abs=1e-9)


def test_market_exclusions_trapezoid_and_inp_by_hand():
    """One query (pid 7, camera 1) against 9 gallery images at distances 0..8.

    Rank 0: pid 7 cam 1 (same pid and camera: removed); 1: junk (removed); then the kept list is
    [7/c2, 3, 7/c3, 0, 5, 7/c4, 3] — hits at kept ranks 1, 3, 6.
    """
    g_pids = [7, -1, 7, 3, 7, 0, 5, 7, 3]
    g_cams = [1, 2, 2, 1, 3, 4, 5, 4, 6]
    dist = torch.arange(9, dtype=torch.float64).unsqueeze(0)
    ranking = rank_matches(None, None, [7], g_pids, [1], g_cams, protocol="market1501", distmat=dist)
    assert ranking.first_rank.tolist() == [1]
    assert float(ranking.ap[0]) == pytest.approx((1 / 1 + 2 / 3 + 3 / 6) / 3)
    # Official Market-1501 / Oxford compute_ap: mean over hits of (previous + current precision) / 2,
    # previous = i / (r - 1) for the i-th (0-based) hit at 1-based rank r, 1 at rank 1.
    assert float(ranking.ap_trapezoid[0]) == pytest.approx(((1 + 1) / 2 + (1 / 2 + 2 / 3) / 2 + (2 / 5 + 3 / 6) / 2) / 3)
    assert float(ranking.ap_trapezoid[0]) == pytest.approx(0.677777777777)
    assert float(ranking.inp[0]) == pytest.approx(3 / 6)


def test_minp_definition_and_skipped_queries():
    """INP = matches / rank of the hardest match; a query without matches is left out of the means."""
    g_pids = [1, 2, 1, 1, 2, 3]
    g_cams = [2, 2, 2, 2, 2, 2]
    dist = torch.tensor([[0.0, 1, 2, 3, 4, 5], [5.0, 4, 3, 2, 1, 0], [0.0, 1, 2, 3, 4, 5]])
    ranking = rank_matches(None, None, [1, 2, 9], g_pids, [1, 1, 1], g_cams, protocol="market1501", distmat=dist)
    assert ranking.valid.tolist() == [True, True, False]
    assert ranking.inp.tolist() == pytest.approx([3 / 4, 2 / 5])
    assert ranking.first_rank.tolist() == [1, 2]
    assert ranking.cmc(3).tolist() == pytest.approx([0.5, 1.0, 1.0])


@pytest.mark.parametrize(("rule", "dedup"), [("market1501", False), ("sysu", True), ("regdb", False)])
def test_heavily_tied_distances_rank_like_a_stable_sort(rule, dedup):
    """Quantised distances (0..5) tie everywhere: ranks must equal a stable sort's, for every protocol."""
    rng = np.random.default_rng(12)
    n_q, n_g = 40, 150
    q_pids, g_pids = rng.integers(1, 8, n_q), rng.integers(-1 if rule == "market1501" else 1, 8, n_g)
    q_cams = rng.choice([3, 6], n_q) if rule == "sysu" else rng.integers(1, 7, n_q)
    g_cams = rng.choice([1, 2, 4, 5], n_g) if rule == "sysu" else rng.integers(1, 7, n_g)
    dist = rng.integers(0, 6, (n_q, n_g)).astype(np.float32)
    curve, ref_map, ref_inp = slow_evaluate(dist, q_pids, g_pids, q_cams, g_cams, rule, dedup=dedup, max_rank=30)
    ranking = rank_matches(None, None, q_pids, g_pids, q_cams, g_cams, protocol=rule, distmat=torch.from_numpy(dist))
    np.testing.assert_allclose(ranking.cmc(30).numpy(), curve, atol=1e-12)
    assert float(ranking.ap.mean()) == pytest.approx(ref_map, abs=1e-12)
    assert float(ranking.inp.mean()) == pytest.approx(ref_inp, abs=1e-12)


def test_ties_keep_gallery_order():
    """Equal distances are ranked in gallery order (stable sort, as MATLAB's sort)."""
    dist = torch.zeros(1, 4)
    ranking = rank_matches(None, None, [5], [1, 5, 2, 5], [1], [2, 2, 2, 2], protocol="market1501", distmat=dist)
    assert ranking.first_rank.tolist() == [2]
    assert float(ranking.ap[0]) == pytest.approx((1 / 2 + 2 / 4) / 2)


# ---------------------------------------------------------------------------------------------
# SYSU-MM01
# ---------------------------------------------------------------------------------------------
def test_sysu_identity_dedup_and_camera_exclusion():
    """Ranked gallery [Q/c2, A/c1, A/c4, B/c2, B/c5, Q/c4] for a camera-3 and a camera-6 query (pid Q).

    cam-3 query skips the cam-2 entries: kept [A, A, B, Q] → image rank 4, identity rank 3 (A, B, Q).
    cam-6 query keeps everything: Q comes first.
    """
    g_pids = [9, 1, 1, 2, 2, 9]
    g_cams = [2, 1, 4, 2, 5, 4]
    dist = torch.arange(6, dtype=torch.float64).repeat(2, 1)
    dedup = rank_matches(None, None, [9, 9], g_pids, [3, 6], g_cams, protocol="sysu", distmat=dist)
    image = rank_matches(None, None, [9, 9], g_pids, [3, 6], g_cams, protocol="sysu", dedup=False, distmat=dist)
    assert dedup.first_rank.tolist() == [3, 1]
    assert image.first_rank.tolist() == [4, 1]
    # mAP and mINP are never de-duplicated: cam-3 hit at kept rank 4; cam-6 hits at ranks 1 and 6.
    assert dedup.ap.tolist() == pytest.approx([1 / 4, (1 + 2 / 6) / 2])
    assert dedup.inp.tolist() == pytest.approx([1 / 4, 2 / 6])


def test_identity_rank_ignores_the_excluded_images_of_the_query_identity():
    """De-duplication after the Market exclusions: [Q same camera (removed), A, Q] → identity rank 2."""
    dist = torch.tensor([[0.0, 1.0, 2.0]])
    ranking = rank_matches(None, None, [9], [9, 1, 9], [1], [1, 2, 3], protocol="market1501", dedup=True, distmat=dist)
    assert ranking.first_rank.tolist() == [2]


def sysu_problem(seed, n_ids=9, dim=16):
    """Synthetic SYSU-MM01 test set: cams 1–6, 0–4 images per (camera, person), shuffled sample order."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids + 1, dim))
    modality_shift = rng.normal(size=dim)
    rows = []
    for cam in range(1, 7):
        for pid in range(1, n_ids + 1):
            for k in range(int(rng.integers(0, 5)) if (cam, pid) != (1, 1) else 3):
                shift = modality_shift if cam in (3, 6) else 0
                feature = centres[pid] + shift + 1.2 * rng.normal(size=dim)
                rows.append((f"cam{cam}/{pid:04d}/{k + 1:04d}.jpg", cam, pid, feature))
    rows = [rows[i] for i in rng.permutation(len(rows))]
    ids = [r[0] for r in rows]
    cams = np.array([r[1] for r in rows])
    pids = np.array([r[2] for r in rows])
    feats = np.stack([r[3] for r in rows])
    return ids, cams, pids, feats


def write_fake_rand_perm_cam(path, ids, cams, pids, n_people, seed, trials=10):
    """rand_perm_cam.mat in the official structure: a 6×1 cell of 1×n_people cells of trials×n matrices."""
    rng = np.random.default_rng(seed)
    perms = {}
    cells = np.empty((6, 1), dtype=object)
    for cam in range(1, 7):
        inner = np.empty((1, n_people), dtype=object)
        for pid in range(1, n_people + 1):
            n = int(((cams == cam) & (pids == pid)).sum())
            if n == 0:
                inner[0, pid - 1] = np.zeros((0, 0))
            else:
                perms[cam, pid] = np.stack([rng.permutation(n) + 1 for _ in range(trials)]).astype(np.float64)
                inner[0, pid - 1] = perms[cam, pid]
        cells[cam - 1, 0] = inner
    scipy.io.savemat(str(path), {"rand_perm_cam": cells})
    return perms


def slow_sysu_testing_set(ids, cams, pids, perms, trial, shot, gallery_cams):
    """get_testing_set.m: per gallery camera and person, rand_perm_cam{cam}{id}(trial, 1:shot)."""
    chosen = []
    for cam in gallery_cams:
        for pid in sorted(set(pids.tolist())):
            members = sorted((i for i in range(len(ids)) if cams[i] == cam and pids[i] == pid), key=lambda i: ids[i])
            if members:
                chosen += [members[int(k) - 1] for k in perms[cam, pid][trial][:shot]]
    return chosen


@pytest.mark.parametrize(("mode", "shot"), [("all", "single"), ("indoor", "single"), ("all", "multi")])
def test_sysu_official_permutations_match_slow_matlab_port(tmp_path, mode, shot):
    ids, cams, pids, feats = sysu_problem(3)
    perms = write_fake_rand_perm_cam(tmp_path / "rand_perm_cam.mat", ids, cams, pids, n_people=12, seed=4)
    gallery_cams = (1, 2, 4, 5) if mode == "all" else (1, 2)
    n_shot = 1 if shot == "single" else 10
    query = [i for i in range(len(ids)) if cams[i] in (3, 6)]
    curves, maps, inps = [], [], []
    for trial in range(10):
        gallery = slow_sysu_testing_set(ids, cams, pids, perms, trial, n_shot, gallery_cams)
        dist = euclidean(feats[query], feats[gallery])
        curve, m, inp = slow_evaluate(dist, pids[query], pids[gallery], cams[query], cams[gallery], "sysu", dedup=True)
        curves.append(curve)
        maps.append(m)
        inps.append(inp)
    params = dict(protocol="sysu", mode=mode, shot=shot, sampler="official", perm_file=str(tmp_path / "rand_perm_cam.mat"),
                  distance="euclidean", device="cpu")
    features = torch.from_numpy(feats)
    ours = cmc(features, pids, cams, ids=ids, max_rank=20, **params)
    np.testing.assert_allclose(ours.numpy() / 100, np.mean(curves, axis=0), atol=1e-12)
    assert mean_ap(features, pids, cams, ids=ids, **params) == pytest.approx(100 * np.mean(maps), abs=1e-10)
    assert mean_inp(features, pids, cams, ids=ids, **params) == pytest.approx(100 * np.mean(inps), abs=1e-10)
    assert 5 < ours[0] < 95


def test_read_rand_perm_cam_official_structure(tmp_path):
    ids, cams, pids, _ = sysu_problem(5)
    perms = write_fake_rand_perm_cam(tmp_path / "p.mat", ids, cams, pids, n_people=12, seed=1)
    read = read_rand_perm_cam(tmp_path / "p.mat")
    assert len(read) == 6 and all(len(people) == 12 for people in read)
    for (cam, pid), matrix in perms.items():
        np.testing.assert_array_equal(read[cam - 1][pid - 1], matrix.astype(int) - 1)
    absent = [(c, p) for c in range(1, 7) for p in range(1, 13) if (c, p) not in perms]
    assert absent and all(read[c - 1][p - 1] is None for c, p in absent)


def test_sysu_permutation_file_must_fit_the_samples(tmp_path):
    ids, cams, pids, feats = sysu_problem(6)
    write_fake_rand_perm_cam(tmp_path / "p.mat", ids, cams, pids, n_people=12, seed=1)
    keep = ~((cams == 1) & (pids == 1) & np.array([i.endswith("0001.jpg") for i in ids]))  # drop one image
    params = dict(protocol="sysu", sampler="official", perm_file=str(tmp_path / "p.mat"), device="cpu")
    with pytest.raises(DataError, match=r"rand_perm_cam\{1\}\{1\} permutes 3 images but the samples hold 2"):
        mean_ap(torch.from_numpy(feats[keep]), pids[keep], cams[keep], ids=[i for i, k in zip(ids, keep, strict=True) if k], **params)
    with pytest.raises(DataError, match="needs perm_file"):
        mean_ap(torch.from_numpy(feats), pids, cams, ids=ids, protocol="sysu", sampler="official", device="cpu")
    (tmp_path / "bad.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="cannot read SYSU-MM01 permutation file"):
        mean_ap(torch.from_numpy(feats), pids, cams, ids=ids, protocol="sysu", perm_file=str(tmp_path / "bad.mat"), device="cpu")


def test_sysu_seeded_sampler_is_reproducible_and_recorded(tmp_path):
    ids, cams, pids, feats = sysu_problem(7)
    features = torch.from_numpy(feats)
    a = cmc(features, pids, cams, ids=ids, protocol="sysu", seed=0, device="cpu")
    b = cmc(features, pids, cams, ids=ids, protocol="sysu", seed=0, device="cpu")
    c = cmc(features, pids, cams, ids=ids, protocol="sysu", seed=1, device="cpu")
    assert torch.equal(a, b) and not torch.equal(a, c)
    table = SampleTable.build(pids, cams, ids=ids)
    missing = Protocol(protocol="sysu", perm_file=str(tmp_path / "absent.mat"))  # auto: falls back to seeded
    _, sampler = reid.evaluate_samples(features, table, missing, "cpu")
    assert sampler.startswith("seeded")


# ---------------------------------------------------------------------------------------------
# RegDB
# ---------------------------------------------------------------------------------------------
def regdb_problem(seed, n_ids=12, per_id=4, dim=16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    pids, modalities, feats = [], [], []
    for pid in range(n_ids):
        for modality in ("visible", "thermal"):
            for _ in range(per_id):
                pids.append(pid)
                modalities.append(modality)
                feats.append(centres[pid] + 1.5 * rng.normal(size=dim))
    return np.array(pids), modalities, np.stack(feats)


@pytest.mark.parametrize("direction", ["v2t", "t2v"])
def test_regdb_matches_slow_eval_regdb(direction):
    pids, modalities, feats = regdb_problem(8)
    visible = np.array([m == "visible" for m in modalities])
    q, g = (visible, ~visible) if direction == "v2t" else (~visible, visible)
    cams = np.where(visible, 1, 2)
    curve, ref_map, ref_inp = slow_evaluate(euclidean(feats[q], feats[g]), pids[q], pids[g], cams[q], cams[g], "none", dedup=False)
    features = torch.from_numpy(feats)
    params = dict(protocol="regdb", direction=direction, distance="euclidean", device="cpu")
    np.testing.assert_allclose(cmc(features, pids, cams, modalities=modalities, max_rank=20, **params).numpy() / 100, curve, atol=1e-12)
    assert mean_ap(features, pids, cams, modalities=modalities, **params) == pytest.approx(100 * ref_map, abs=1e-10)
    assert mean_inp(features, pids, cams, modalities=modalities, **params) == pytest.approx(100 * ref_inp, abs=1e-10)


def test_trial_groups_are_scored_separately_and_averaged():
    """RegDB's 10 splits: samples carry `trial`; each is ranked on its own, the results are averaged."""
    parts = [regdb_problem(seed) for seed in (9, 10)]
    singles = [
        mean_ap(torch.from_numpy(f), p, np.zeros(len(p), dtype=int), modalities=m, protocol="regdb", device="cpu")
        for p, m, f in parts
    ]
    pids = np.concatenate([p for p, _, _ in parts])
    modalities = [m for _, ms, _ in parts for m in ms]
    feats = torch.from_numpy(np.concatenate([f for _, _, f in parts]))
    trials = np.repeat([0, 1], [len(parts[0][0]), len(parts[1][0])])
    both = mean_ap(feats, pids, np.zeros(len(pids), dtype=int), modalities=modalities, trials=trials, protocol="regdb", device="cpu")
    assert both == pytest.approx(sum(singles) / 2, abs=1e-10)
    assert singles[0] != pytest.approx(singles[1])


# ---------------------------------------------------------------------------------------------
# The metric plugins
# ---------------------------------------------------------------------------------------------
def market_samples(seed=11):
    q_f, g_f, q_pids, g_pids, q_cams, g_cams = market_problem(seed, n_q=60, n_g=300)
    samples, predictions = [], []
    for role, feats, pids, cams in (("query", q_f, q_pids, q_cams), ("gallery", g_f, g_pids, g_cams)):
        for k, (f, p, c) in enumerate(zip(feats, pids, cams, strict=True)):
            samples.append({"id": f"{role}/{k:05d}.jpg", "image": torch.zeros(3, 1, 1), "pid": int(p), "camid": int(c),
                            "modality": "visible", "role": role})
            predictions.append(torch.from_numpy(f))
    return samples, predictions


def test_metric_plugins_are_registered_with_the_api_contract():
    for name in ("cmc", "map", "minp"):
        metric = harness.create_metric(name, protocol="market1501")
        assert metric.outputs == frozenset({"embedding"}) and not metric.needs_target and metric.higher_is_better
        assert metric.config["protocol"] == "market1501"
    assert harness.create_metric("cmc", ranks="1,5").config["ranks"] == (1, 5)


def test_metric_classes_equal_functional_twins_and_share_one_ranking(monkeypatch):
    samples, predictions = market_samples()
    calls = []
    original = reid.evaluate_samples
    monkeypatch.setattr(reid, "evaluate_samples", lambda *a, **k: calls.append(1) or original(*a, **k))
    reid._CACHE.clear()
    metrics = {name: harness.create_metric(name, protocol="market1501", device="cpu") for name in ("cmc", "map", "minp")}
    for start in range(0, len(samples), 64):  # batches, as the runner feeds them
        for metric in metrics.values():
            assert metric.update(predictions[start:start + 64], samples[start:start + 64]) is None
    values = {name: metric.compute() for name, metric in metrics.items()}
    details = {name: metric.details() for name, metric in metrics.items()}
    assert len(calls) == 1  # cmc, map and minp ranked the gallery once

    feats = torch.stack(predictions)
    fields = ([s["pid"] for s in samples], [s["camid"] for s in samples], [s["role"] for s in samples])
    curve = cmc(feats, *fields, protocol="market1501", device="cpu")
    assert set(values["cmc"]) == {"rank-1", "rank-5", "rank-10", "rank-20"}
    assert values["cmc"]["rank-5"] == pytest.approx(float(curve[4]))
    assert values["map"]["mAP"] == pytest.approx(mean_ap(feats, *fields, protocol="market1501", device="cpu"))
    assert values["minp"]["mINP"] == pytest.approx(mean_inp(feats, *fields, protocol="market1501", device="cpu"))
    assert details["cmc"]["cmc"] == pytest.approx(curve.tolist()) and len(details["cmc"]["cmc"]) == 50
    assert details["cmc"]["queries"] == 60 and details["cmc"]["gallery"] == [300]
    assert len(details["map"]["ap_per_query"]) == details["map"]["valid_queries"][0]
    assert np.mean(list(details["map"]["ap_per_query"].values())) == pytest.approx(values["map"]["mAP"])
    # Per-query values (what a bootstrap over queries resamples) average back to the reported numbers.
    assert details["map"]["per_sample"]["mAP"] == details["map"]["ap_per_query"]
    ranks = details["cmc"]["first_match_rank"]
    assert len(ranks) == details["cmc"]["valid_queries"][0] and all(len(r) == 1 and r[0] >= 1 for r in ranks.values())
    for k in (1, 5, 10, 20):
        per_query = details["cmc"]["per_sample"][f"rank-{k}"]
        assert set(per_query) == set(ranks)
        assert np.mean(list(per_query.values())) == pytest.approx(values["cmc"][f"rank-{k}"])
        assert per_query == {q: 100.0 * (r[0] <= k) for q, r in ranks.items()}
    assert metrics["map"].convention()["unit"] == "percent"

    before = len(calls)
    trapezoid = harness.create_metric("map", protocol="market1501", ap="trapezoid", device="cpu")
    trapezoid.update(predictions, samples)
    assert trapezoid.compute()["mAP"] < values["map"]["mAP"]  # trapezoid AP ≤ non-interpolated AP
    assert len(calls) == before  # same embedding objects, same protocol: served from the cache
    other = harness.create_metric("map", protocol="market1501", distance="cosine", device="cpu")
    other.update(predictions, samples)
    other.compute()
    assert len(calls) == before + 1  # another distance is another ranking


def test_metric_rejects_bad_predictions_samples_and_options():
    samples, predictions = market_samples()
    metric = harness.create_metric("map")
    with pytest.raises(DataError, match="must be a 1-D float tensor"):
        metric.update([torch.zeros(2, 2)], samples[:1])
    with pytest.raises(DataError, match="has 3 dimensions, earlier ones 32"):
        metric.update([predictions[0], torch.zeros(3)], samples[:2])
    with pytest.raises(DataError, match="expected an int"):
        harness.create_metric("map").update(predictions[:1], [{**samples[0], "pid": "7"}])
    with pytest.raises(UsageError, match="no samples were scored"):
        harness.create_metric("map").compute()
    only_queries = harness.create_metric("map", device="cpu")
    only_queries.update(predictions[:5], samples[:5])
    with pytest.raises(DataError, match="gallery set of trial group 0 is empty"):
        only_queries.compute()
    with pytest.raises(UsageError, match="protocol"):
        harness.create_metric("cmc", protocol="cuhk03")
    with pytest.raises(UsageError, match="ranks must lie in 1..max_rank=50"):
        harness.create_metric("cmc", ranks="1,60")
    with pytest.raises(UsageError, match="trials must be at least 1"):
        harness.create_metric("cmc", trials=0)
