"""precomputed-features: the released file formats, path matching, clear errors, and an end-to-end
`harness run --method precomputed-features --dataset market1501` scored like the functional metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
import torch
from harness_plugins.metrics.reid import cmc, mean_ap, mean_inp
from test_market1501 import GALLERY, QUERY, make_market1501

import harness
from harness import DataError, UsageError

DIM = 8


def feature_of(name: str) -> np.ndarray:
    """A deterministic feature per file: the person's centre plus noise fixed by the file name."""
    pid = max(int(name.split("_")[0]), 0)
    centre = np.random.default_rng(pid).normal(size=DIM)
    noise = np.random.default_rng(sum(map(ord, name))).normal(size=DIM)
    return (centre + 0.8 * noise).astype(np.float32)


def imagefolder_order(names: list[str]) -> list[str]:
    """torchvision ImageFolder over layumi's prepared pytorch/<split>/<PPPP>/ folders: by class folder, then name."""
    return sorted(names, key=lambda name: (name.split("_")[0], name))


def layumi_result(path, query=QUERY, gallery=GALLERY):
    """pytorch_result.mat exactly as layumi's test.py saves it: features, labels and cameras, no paths."""
    def labels(names):
        return [-1 if n.startswith("-1") else int(n[:4]) for n in names], [int(n.split("c")[1][0]) for n in names]

    q, g = imagefolder_order(query), imagefolder_order(gallery)
    (q_label, q_cam), (g_label, g_cam) = labels(q), labels(g)
    scipy.io.savemat(str(path), {
        "gallery_f": np.stack([feature_of(n) for n in g]), "gallery_label": g_label, "gallery_cam": g_cam,
        "query_f": np.stack([feature_of(n) for n in q]), "query_label": q_label, "query_cam": q_cam,
    })
    return path


def sample(folder: str, name: str) -> dict:
    return {"id": f"{folder}/{name}", "image": torch.empty(3, 0, 0)}


def loaded(path, **options) -> harness.Method:
    method = harness.create_method("precomputed-features", **options)
    method.load(path, "cpu")
    return method


def test_npz_with_absolute_paths_matches_sample_ids(tmp_path):
    names = [f"/data/Market-1501-v15.09.15/query/{n}" for n in QUERY] + [f"D:\\market\\bounding_box_test\\{n}" for n in GALLERY]
    features = np.stack([feature_of(n.replace("\\", "/").rsplit("/", 1)[1]) for n in names])
    np.savez(tmp_path / "f.npz", features=features, paths=np.array(names))
    method = loaded(tmp_path / "f.npz")
    batch = [sample("bounding_box_test", GALLERY[5]), sample("query", QUERY[2])]
    out = method.predict(batch)
    assert [o.shape for o in out] == [(DIM,), (DIM,)] and out[0].dtype == torch.float32
    assert np.array_equal(out[0].numpy(), feature_of(GALLERY[5])) and np.array_equal(out[1].numpy(), feature_of(QUERY[2]))


def test_layumi_pytorch_result_mat_rows_named_by_the_dataset_folders(tmp_path):
    root = make_market1501(tmp_path / "market")
    method = loaded(layumi_result(tmp_path / "pytorch_result.mat"), names_root=str(root))
    for folder, names in (("query", QUERY), ("bounding_box_test", GALLERY)):
        out = method.predict([sample(folder, n) for n in names])
        assert all(np.array_equal(o.numpy(), feature_of(n)) for o, n in zip(out, names, strict=True))


def test_layumi_mat_needs_names_root_and_the_matching_dataset(tmp_path):
    root = make_market1501(tmp_path / "market")
    result = layumi_result(tmp_path / "pytorch_result.mat")
    with pytest.raises(DataError, match="has no query_path.*names_root=DATASET_ROOT"):
        loaded(result)
    with pytest.raises(DataError, match=r"query_f has 3 rows but .*query holds 4 \.jpg images"):
        loaded(layumi_result(tmp_path / "short.mat", query=QUERY[:3]), names_root=str(root))
    other = make_market1501(tmp_path / "other", query=["0009_c1s1_000001_00.jpg", *QUERY[1:]])
    expected = "row 0 of query_f is person 1 / camera 1 but name 0 of the sorted query/ is 0002_c2s1_000301_00.jpg"
    with pytest.raises(DataError, match=expected):
        loaded(result, names_root=str(other))


def test_hicmd_style_imagefolder_pairs_match_by_file_name(tmp_path):
    """Hi-CMD saves ImageFolder.imgs — (path, label) pairs of its prepared pytorch/<split>/<PPPP>/ copy."""
    q, g = imagefolder_order(QUERY), imagefolder_order(GALLERY)
    scipy.io.savemat(str(tmp_path / "net_test.mat"), {
        "query_f": np.stack([feature_of(n) for n in q]), "gallery_f": np.stack([feature_of(n) for n in g]),
        "query_path": [(f"./data/market/pytorch/query/{n[:4]}/{n}", k) for k, n in enumerate(q)],
        "gallery_path": [(f"./data/market/pytorch/gallery/{n.split('_')[0]}/{n}", k) for k, n in enumerate(g)],
    })
    method = loaded(tmp_path / "net_test.mat")
    out = method.predict([sample("bounding_box_test", GALLERY[0]), sample("query", QUERY[3])])
    assert np.array_equal(out[0].numpy(), feature_of(GALLERY[0])) and np.array_equal(out[1].numpy(), feature_of(QUERY[3]))


def test_missing_and_ambiguous_samples_are_errors(tmp_path):
    np.savez(tmp_path / "f.npz", features=np.zeros((3, 2), np.float32),
             paths=np.array(["a/query/x.jpg", "b/query/x.jpg", "c/bounding_box_test/y.jpg"]))
    method = loaded(tmp_path / "f.npz")
    with pytest.raises(DataError, match=r"2 of 3 samples have no features in .*f\.npz; first missing: query/p\.jpg, query/q\.jpg"):
        method.predict([sample("query", "p.jpg"), sample("bounding_box_test", "y.jpg"), sample("query", "q.jpg")])
    with pytest.raises(DataError, match="'query/x.jpg' .* names several rows"):
        method.predict([sample("query", "x.jpg")])
    assert method.predict([{"id": "a/query/x.jpg"}])[0].shape == (2,)  # a longer id is unambiguous


def test_bad_files_and_missing_path(tmp_path):
    with pytest.raises(UsageError, match="--checkpoint FILE or --option path=FILE"):
        loaded(None)
    with pytest.raises(DataError, match="features file not found"):
        loaded(tmp_path / "absent.npz")
    (tmp_path / "f.pkl").write_bytes(b"x")
    with pytest.raises(DataError, match="unsupported type .pkl"):
        loaded(tmp_path / "f.pkl")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116) + b"\0" * 8 + b"\x00\x02" + b"IM"
    (tmp_path / "v73.mat").write_bytes(header + b"\0" * 512)
    with pytest.raises(DataError, match="v7.3 .*re-save"):
        loaded(tmp_path / "v73.mat")
    np.savez(tmp_path / "nopaths.npz", features=np.zeros((2, 2)))
    with pytest.raises(DataError, match="image path of each row"):
        loaded(tmp_path / "nopaths.npz")
    np.savez(tmp_path / "count.npz", features=np.zeros((2, 2)), paths=np.array(["a.jpg"]))
    with pytest.raises(DataError, match="2 rows but 1 image paths"):
        loaded(tmp_path / "count.npz")
    np.savez(tmp_path / "other.npz", weights=np.zeros(2))
    with pytest.raises(DataError, match="found weights"):
        loaded(tmp_path / "other.npz")
    np.savez(tmp_path / "path_option.npz", features=np.ones((1, 2)), paths=np.array(["query/a.jpg"]))
    method = harness.create_method("precomputed-features", path=str(tmp_path / "path_option.npz"))
    method.load(None, "cpu")
    assert method.predict([sample("query", "a.jpg")])[0].tolist() == [1.0, 1.0]


def test_end_to_end_run_scores_released_features_under_the_market_protocol(tmp_path, cli):
    root = make_market1501(tmp_path / "market")
    result = layumi_result(tmp_path / "pytorch_result.mat")
    code, out, err = cli(
        "run", "--method", "precomputed-features", "--dataset", "market1501", "--data-root", root,
        "--checkpoint", result, "--option", f"names_root={root}",
        "--dataset-option", "strict=false", "--json", "--quiet",
    )
    assert code == 0, err
    record = json.loads(out)
    metrics = record["metrics"]
    assert set(metrics) == {"cmc", "map", "minp"}
    assert metrics["cmc"]["params"]["protocol"] == "market1501"
    assert metrics["cmc"]["details"]["protocol"]["excluded"].startswith("same pid and same camera")

    names = [("query", n) for n in sorted(QUERY)] + [("bounding_box_test", n) for n in sorted(GALLERY)]
    feats = torch.from_numpy(np.stack([feature_of(n) for _, n in names]))
    pids = [max(int(n.split("_")[0]), -1) if not n.startswith("-1") else -1 for _, n in names]
    cams = [int(n.split("_c")[1][0]) for _, n in names]
    roles = ["query" if f == "query" else "gallery" for f, _ in names]
    curve = cmc(feats, pids, cams, roles, protocol="market1501")
    assert metrics["cmc"]["values"] == pytest.approx({f"rank-{k}": float(curve[k - 1]) for k in (1, 5, 10, 20)})
    assert metrics["map"]["values"]["mAP"] == pytest.approx(mean_ap(feats, pids, cams, roles, protocol="market1501"))
    assert metrics["minp"]["values"]["mINP"] == pytest.approx(mean_inp(feats, pids, cams, roles, protocol="market1501"))
    assert 0 < metrics["map"]["values"]["mAP"] < 100
    assert record["method"]["checkpoint_sha256"]  # the features file is part of the provenance


def test_end_to_end_run_with_a_missing_feature_fails_clearly(tmp_path, cli):
    root = make_market1501(tmp_path / "market")
    names = [f"query/{n}" for n in QUERY] + [f"bounding_box_test/{n}" for n in GALLERY[1:]]
    np.savez(tmp_path / "f.npz", features=np.zeros((len(names), 2), np.float32), paths=np.array(names))
    code, out, err = cli(
        "run", "--method", "precomputed-features", "--dataset", "market1501", "--data-root", root,
        "--checkpoint", tmp_path / "f.npz", "--dataset-option", "strict=false", "--quiet",
    )
    assert code != 0
    assert f"first missing: bounding_box_test/{GALLERY[0]}" in out + err
