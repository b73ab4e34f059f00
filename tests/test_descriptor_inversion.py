"""Descriptor inversion: the SIFT pipeline, the descriptor-map placement rule, the CelebA protocol split,
sift-synth and sift-cgan through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from harness import DataError
from harness.checkpoints import save_weights
from harness_plugins.datasets import sift_features
from harness_plugins.datasets.celeba_sift import CelebASift, SiftSynth, celeba_split
from harness_plugins.methods.descriptor_inversion.descriptor_maps import descriptor_map, place, sparse_sift_map
from harness_plugins.methods.descriptor_inversion.sift_cgan import SiftCGAN


# -- placement rule ---------------------------------------------------------------------------------
def keypoints(*xy: tuple[float, float]) -> torch.Tensor:
    return torch.tensor([(x, y, 2.0, 0.0) for x, y in xy], dtype=torch.float32)


def test_collision_goes_to_the_first_empty_neighbour_in_row_major_order():
    # 8×8 image, cell 2: a 4×4 map. Three keypoints fall into cell (1, 1); the second goes to the
    # first neighbour (0, 0), the third to (0, 1).
    placed, dropped = place(keypoints((2.5, 2.5), (3.9, 3.0), (2.0, 2.0)), (8, 8), 2)
    assert placed == [(0, 1, 1), (1, 0, 0), (2, 0, 1)] and dropped == 0
    # At the map's corner, neighbours outside the map are skipped: (0,0) is taken, so (0,1) then (1,0).
    placed, _ = place(keypoints((0.5, 0.5), (1.0, 1.0), (1.5, 0.2)), (8, 8), 2)
    assert placed == [(0, 0, 0), (1, 0, 1), (2, 1, 0)]


def test_no_empty_neighbour_drops_the_keypoint():
    # A 2×2 map (4×4 image, cell 2) holds four keypoints; the fifth in the same cell has nowhere to go.
    points = keypoints(*[(1.0, 1.0)] * 5)
    placed, dropped = place(points, (4, 4), 2)
    assert [p[1:] for p in placed] == [(0, 0), (0, 1), (1, 0), (1, 1)] and dropped == 1
    descriptors = torch.arange(5 * 128, dtype=torch.float32).reshape(5, 128)
    grid, lost = descriptor_map(points, descriptors, (4, 4), 2)
    assert lost == 1 and grid.shape == (128, 2, 2)
    torch.testing.assert_close(grid[:, 1, 0], descriptors[2] / 512)
    assert not any(torch.equal(grid[:, r, c], descriptors[4] / 512) for r in range(2) for c in range(2))


def test_maps_of_odd_sizes_and_the_sparse_sift_map():
    grid, _ = descriptor_map(keypoints((9.0, 4.0)), torch.ones(1, 128), (10, 10), 4)
    assert grid.shape == (128, 3, 3) and grid[:, 1, 2].sum() > 0
    sparse = sparse_sift_map(torch.tensor([[9.0, 4.0, 4.0, 90.0], [9.5, 4.5, 2.0, 0.0]]), torch.ones(2, 128) * 512, (10, 10), 4)
    assert sparse.shape == (133, 3, 3)
    torch.testing.assert_close(sparse[128:, 1, 2], torch.tensor([0.25, 0.0, 2.0, 0.0, 1.0]), atol=1e-6, rtol=0)
    assert sparse[:128].sum() == 128  # the second keypoint of the cell is dropped


# -- SIFT pipeline ----------------------------------------------------------------------------------
def test_gamma_gray_and_center_square():
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    image[..., 0] = 255
    image[..., 1] = 64
    expected = round((1 + (64 / 255) ** (1 / 2.2) + 0) / 3 * 255)
    assert int(sift_features.gamma_gray(image)[0, 0]) == expected
    tall = np.arange(10 * 6 * 3, dtype=np.uint8).reshape(10, 6, 3)
    assert np.array_equal(sift_features.center_square(tall, 6), tall[2:8])


def test_sift_matches_opencv_on_the_gamma_gray_image():
    import cv2
    from skimage import data

    image = sift_features.center_square(data.astronaut(), 128)
    points, descriptors = sift_features.extract(sift_features.gamma_gray(image), sift_features.sift_params())
    reference_kp, reference_desc = cv2.SIFT_create().detectAndCompute(sift_features.gamma_gray(image), None)
    assert points.shape == (len(reference_kp), 4) and descriptors.shape == (len(reference_kp), 128)
    np.testing.assert_array_equal(descriptors, reference_desc)
    np.testing.assert_allclose(points[:, :2], [k.pt for k in reference_kp], rtol=0, atol=1e-5)


def test_features_are_extracted_once_and_kept_in_the_cache(monkeypatch):
    from skimage import data

    from harness.run.cache import Cache

    image = sift_features.center_square(data.coffee(), 64)
    params = sift_features.sift_params()
    points, descriptors = sift_features.features(image, params)
    assert any(e.namespace == sift_features.CACHE_NAMESPACE for e in Cache().entries("features"))

    def no_extraction(*args):
        raise AssertionError("SIFT ran again although its features are cached")

    monkeypatch.setattr(sift_features, "extract", no_extraction)
    again = sift_features.features(image, params)
    assert torch.equal(again[0], points) and torch.equal(again[1], descriptors) and again[1].dtype == torch.float32
    with pytest.raises(AssertionError, match="ran again"):
        sift_features.features(image, sift_features.sift_params(contrastThreshold=0.03))


# -- CelebA protocol --------------------------------------------------------------------------------
def test_celeba_split_is_identity_disjoint_and_fixed():
    identities = {f"{i:06d}.jpg": 1 + i % 37 for i in range(1, 400)}
    split = celeba_split(identities, train_size=100, test_size=20)
    test_ids = [identities[name] for name in split["test"]]
    assert len(split["test"]) == 20 and len(set(test_ids)) == 20
    assert not set(test_ids) & {identities[name] for name in split["train"]}
    assert len(split["train"]) == 100 and split == celeba_split(identities, train_size=100, test_size=20)
    with pytest.raises(DataError, match="only"):
        celeba_split(identities, train_size=390, test_size=20)


def celeba_fixture(root, count=12):
    from skimage import data

    photo = data.astronaut()
    lines = []
    for i in range(1, count + 1):
        crop = photo[10 * i : 10 * i + 218, 12 * i : 12 * i + 178]
        name = f"{i:06d}.jpg"
        (root / "img_align_celeba").mkdir(parents=True, exist_ok=True)
        Image.fromarray(crop).save(root / "img_align_celeba" / name, quality=95)
        lines.append(f"{name} {1 + i % 5}")
    (root / "identity_CelebA.txt").write_text("\n".join(lines) + "\n")
    return root


def test_sift_cgan_runs_on_a_celeba_layout_fixture(cli, tmp_path):
    root = celeba_fixture(tmp_path / "celeba")
    options = ["--option", "width=4", "--option", "ngf=4", "--option", "blocks=1"]
    method = SiftCGAN(width=4, ngf=4, blocks=1)
    save_weights(method.build(), tmp_path / "weights.safetensors")
    code, out, err = cli(
        "run", "--method", "sift-cgan", "--dataset", "celeba-sift", "--data-root", root,
        "--dataset-option", "train_size=4", "--dataset-option", "test_size=2", *options,
        "--checkpoint", tmp_path / "weights.safetensors", "--metric", "psnr,ssim", "--json",
    )
    assert code == 0, err
    record = json.loads(out)
    assert record["samples"] == 2 and record["status"] == "ok"
    assert record["metrics"]["psnr"]["params"]["convention"] == "skimage-default"
    assert len(record["dataset"]["layout"]["split_sha256"]) == 64


def test_celeba_missing_identity_file_names_the_layout(tmp_path):
    with pytest.raises(DataError, match="identity_CelebA.txt"):
        CelebASift(tmp_path).verify("test")


def test_sample_holds_descriptors_never_for_the_method_the_image(tmp_path):
    dataset = SiftSynth(tmp_path / "sift-synth")
    sample = next(dataset.samples("test"))
    assert sample["size"] == (128, 128) and sample["keypoints"].shape[1] == 4 and sample["descriptors"].shape[1] == 128
    from harness.tasks import DESCRIPTOR_INVERSION

    assert set(DESCRIPTOR_INVERSION.method_view(sample)) == {"id", "keypoints", "descriptors", "size"}
    partial = next(SiftSynth(tmp_path / "sift-synth", drop_box=0.5).samples("test"))
    assert partial["keypoints"].shape[0] < sample["keypoints"].shape[0]
    inside = ((partial["keypoints"][:, :2] >= 32) & (partial["keypoints"][:, :2] < 96)).all(dim=1)
    assert not inside.any() and partial["mask"][0, 32:96, 32:96].all() and partial["mask"].sum() == 64 * 64


# -- training ---------------------------------------------------------------------------------------
def test_short_sift_cgan_training_beats_the_mean_image_on_sift_synth(cli, tmp_path):
    """The done-when claim: R pretraining then joint R+G+D training (5 D updates per G update) for a
    short CPU budget reconstructs sift-synth better than the mean training image (PSNR)."""
    code, _, err = cli("train", "--method", "descriptor-mean", "--dataset", "sift-synth", "--out", tmp_path / "mean")
    assert code == 0, err
    tiny = ["--option", "width=8", "--option", "ngf=4", "--option", "blocks=1"]
    code, _, err = cli("train", "--method", "sift-cgan", "--dataset", "sift-synth", "--steps", "80", "--batch-size", "8",
                       *tiny, "--option", "ndf=8", "--option", "loss=l2", "--option", "lr=1e-3", "--option", "pretrain=0.75",
                       "--out", tmp_path / "cgan")
    assert code == 0, err
    log = [json.loads(line) for line in (tmp_path / "cgan" / "train_log.jsonl").read_text().splitlines()]
    assert "R/l2" in log[0]["losses"] and {"D", "G/gan", "G/l2"} <= set(log[-1]["losses"])
    scores = {}
    for method, extra in (("descriptor-mean", []), ("sift-cgan", tiny)):
        code, out, err = cli("run", "--method", method, "--dataset", "sift-synth", "--checkpoint", tmp_path / method.split("-")[-1],
                             *extra, "--metric", "psnr", "--json")
        assert code == 0, err
        scores[method] = json.loads(out)["metrics"]["psnr"]["values"]["psnr"]
    assert scores["sift-cgan"] > scores["descriptor-mean"] + 0.5, scores


def test_partial_descriptors_scored_inside_and_outside_the_dropped_box(cli, tmp_path):
    """The CLI line of celeba_sift's docstring: PSNR and ℓ1 inside and outside the dropped box as labels of
    one run. On one sample the two regions partition the image, so (box = a quarter of the pixels)
    MSE = ¼·MSE_inside + ¾·MSE_outside, and the same for the mean ℓ1."""
    code, _, err = cli("train", "--method", "descriptor-mean", "--dataset", "sift-synth", "--out", tmp_path / "mean")
    assert code == 0, err
    code, out, err = cli("run", "--method", "descriptor-mean", "--checkpoint", tmp_path / "mean", "--dataset", "sift-synth",
                         "--dataset-option", "drop_box=0.5", "--limit", "1",
                         "--metric", "psnr,psnr@inside,psnr@outside,l1,l1@hole,l1@outside",
                         "--metric-option", "psnr@inside.region=hole", "--metric-option", "psnr@outside.region=outside",
                         "--json")
    assert code == 0, err
    metrics = json.loads(out)["metrics"]
    assert metrics["psnr@outside"]["params"]["region"] == "outside" and metrics["l1@outside"]["params"]["region"] == "outside"
    mse = {label: 10 ** (-metrics[label]["values"]["psnr"] / 10) for label in ("psnr", "psnr@inside", "psnr@outside")}
    assert mse["psnr@inside"] != pytest.approx(mse["psnr@outside"], rel=1e-3)
    assert mse["psnr"] == pytest.approx(0.25 * mse["psnr@inside"] + 0.75 * mse["psnr@outside"], rel=1e-9)
    l1 = {label: metrics[label]["values"]["l1"] for label in ("l1", "l1@hole", "l1@outside")}
    assert l1["l1"] == pytest.approx(0.25 * l1["l1@hole"] + 0.75 * l1["l1@outside"], rel=1e-9)


def test_dosovitskiy_brox_trains_on_sparse_maps(cli, tmp_path):
    out = tmp_path / "db"
    code, _, err = cli("train", "--method", "dosovitskiy-brox", "--dataset", "sift-synth", "--steps", "2", "--batch-size", "2",
                       "--option", "width=4", "--out", out)
    assert code == 0, err
    code, _, err = cli("run", "--method", "dosovitskiy-brox", "--dataset", "sift-synth", "--checkpoint", out,
                       "--option", "width=4", "--metric", "psnr", "--limit", "2")
    assert code == 0, err


def test_fine_generator_uses_the_papers_pre_activation_batch_norm_blocks():
    from harness_plugins.methods.translation.cyclegan import ResnetGenerator
    from harness_plugins.methods.descriptor_inversion.sift_cgan import PreActBlock

    fine = SiftCGAN(width=8, ngf=4, blocks=2).build().fine.generator
    blocks = [m for m in fine.modules() if isinstance(m, PreActBlock)]
    assert len(blocks) == 2
    kinds = [type(m).__name__ for m in blocks[0].conv_block]
    # §III-C: normalisation → ReLU → convolution, twice, dropout 0.5 before the second convolution
    assert kinds == ["BatchNorm2d", "ReLU", "ReflectionPad2d", "Conv2d", "BatchNorm2d", "ReLU", "Dropout", "ReflectionPad2d", "Conv2d"]
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in fine.modules())
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert fine.eval()(x).shape == x.shape
    assert isinstance(SiftCGAN(width=8, ngf=4, blocks=2, resblock="cyclegan").build().fine.generator, ResnetGenerator)
