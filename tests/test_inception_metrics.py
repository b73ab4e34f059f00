"""`fid`, `kid`, `is`: the math against scipy/pytorch-fid/torch-fidelity on synthetic features, and the
whole pipeline against pytorch-fid and torch-fidelity on a randomly initialised network saved under
the real weights file names (no weights can be downloaded here)."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch_fidelity.metric_isc
import torch_fidelity.metric_kid
from inception_weights import random_inception_state
from pytorch_fid import fid_score
from pytorch_fid.inception import InceptionV3
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

import harness
from harness import DataError, UsageError
from harness.data import read_image, save_png, sha256_file, to_tensor
from harness_plugins.metrics import inception
from harness_plugins.metrics.inception import (
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
)
from harness_plugins.shared.inception_net import PROTOCOLS

PT_FILE = PROTOCOLS["pytorch-fid"].weights_file
TF_FILE = PROTOCOLS["torch-fidelity"].weights_file


# -- the math on synthetic features ---------------------------------------------------------------

def _features(rng: np.random.Generator, n: int, d: int, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    mixing = rng.standard_normal((d, d)) / np.sqrt(d)
    return np.abs(rng.standard_normal((n, d)) @ mixing) * scale + shift


def _exact_fid(a: np.ndarray, b: np.ndarray) -> float:
    """Independent route from the data: tr √(Σ1Σ2) is the nuclear norm of A_cᵀ... i.e. of A_c·B_cᵀ/√((n1−1)(n2−1))."""
    ac, bc = a - a.mean(0), b - b.mean(0)
    nuclear = np.linalg.svd(ac @ bc.T, compute_uv=False).sum() / np.sqrt((len(a) - 1) * (len(b) - 1))
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + np.trace(np.cov(a, rowvar=False)) + np.trace(np.cov(b, rowvar=False)) - 2 * nuclear)


def _pytorch_fid_distance(*stats: np.ndarray) -> float:
    """pytorch-fid's `calculate_frechet_distance` (scipy sqrtm), quiet about scipy's warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fid_score.calculate_frechet_distance(*stats))


@pytest.mark.parametrize("seed,n,d", [(0, 400, 32), (1, 1000, 96), (2, 300, 128)])
def test_frechet_distance_matches_scipy_sqrtm_route(seed, n, d):
    rng = np.random.default_rng(seed)
    stats = (*feature_statistics(_features(rng, n, d)), *feature_statistics(_features(rng, n + 7, d, 1.2, 0.1)))
    expected = _pytorch_fid_distance(*stats)
    assert frechet_distance(*stats) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("n", [5, 20, 63])
def test_frechet_distance_on_singular_covariances(n):
    """N ≤ D: both covariances are singular. The value is the exact one (no ε needed), the reference's
    ε-regularised value tends to it, and with the same ε both agree."""
    rng = np.random.default_rng(n)
    a, b = _features(rng, n, 64), _features(rng, n, 64, 1.3, 0.1)
    mu1, s1 = feature_statistics(a)
    mu2, s2 = feature_statistics(b)
    value = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(value)
    assert value == pytest.approx(_exact_fid(a, b), rel=1e-7)
    eps = np.eye(64) * 1e-6
    regularised = _pytorch_fid_distance(mu1, s1 + eps, mu2, s2 + eps)
    assert frechet_distance(mu1, s1 + eps, mu2, s2 + eps) == pytest.approx(regularised, rel=1e-9)
    assert regularised == pytest.approx(value, rel=1e-4)


def test_frechet_distance_degenerate_cases():
    d = 16
    rng = np.random.default_rng(3)
    zero = np.zeros((d, d))
    assert frechet_distance(np.zeros(d), zero, np.ones(d), zero) == pytest.approx(d)  # identical images per set
    v, w = rng.standard_normal(d), rng.standard_normal(d)
    rank_one = frechet_distance(np.zeros(d), np.outer(v, v), np.zeros(d), np.outer(w, w))
    assert rank_one == pytest.approx(v @ v + w @ w - 2 * abs(v @ w), rel=1e-9)
    x = _features(rng, 50, d)
    assert abs(frechet_distance(*feature_statistics(x), *feature_statistics(x))) < 1e-9
    with pytest.raises(DataError, match="NaN"):
        frechet_distance(np.full(d, np.nan), zero, np.zeros(d), zero)
    with pytest.raises(DataError, match="shape"):
        frechet_distance(np.zeros(d), zero, np.zeros(d + 1), zero)


def test_kid_matches_torch_fidelity():
    rng = np.random.default_rng(4)
    x, y = _features(rng, 80, 24), _features(rng, 70, 24, 1.1, 0.05)
    mean, std, values = kernel_inception_distance(x, y, subsets=12, subset_size=50, seed=7)
    reference = torch_fidelity.metric_kid.kid_features_to_metric(
        torch.from_numpy(x), torch.from_numpy(y), kid_subsets=12, kid_subset_size=50, rng_seed=7, verbose=False
    )
    assert mean == pytest.approx(reference["kernel_inception_distance_mean"], rel=1e-10)
    assert std == pytest.approx(reference["kernel_inception_distance_std"], rel=1e-10)
    assert values.shape == (12,)
    # subset_size 1000 > N is capped at the smaller set, where torch-fidelity must be told explicitly
    capped = kernel_inception_distance(x, y, subsets=3, seed=1)[0]
    reference = torch_fidelity.metric_kid.kid_features_to_metric(
        torch.from_numpy(x), torch.from_numpy(y), kid_subsets=3, kid_subset_size=70, rng_seed=1, verbose=False
    )
    assert capped == pytest.approx(reference["kernel_inception_distance_mean"], rel=1e-10)


def test_kid_single_full_subset_is_the_unbiased_mmd():
    """One subset holding every sample is a permutation of the sets: the plain unbiased MMD² formula."""
    rng = np.random.default_rng(5)
    x, y = _features(rng, 30, 8), _features(rng, 30, 8, 0.9)

    def kernel(a, b):
        return (a @ b.T / 8 + 1) ** 3

    def off_diagonal_mean(k):
        return (k.sum() - np.trace(k)) / (len(k) * (len(k) - 1))

    expected = off_diagonal_mean(kernel(x, x)) + off_diagonal_mean(kernel(y, y)) - 2 * kernel(x, y).mean()
    mean, std, _ = kernel_inception_distance(x, y, subsets=1, subset_size=30)
    assert mean == pytest.approx(expected, rel=1e-12) and std == 0


def _improved_gan_is(logits: np.ndarray, splits: int) -> tuple[float, float]:
    """The openai/improved-gan formula, transcribed in numpy float64."""
    preds = np.exp(logits - logits.max(1, keepdims=True))
    preds /= preds.sum(1, keepdims=True)
    scores = []
    for i in range(splits):
        part = preds[(i * len(preds) // splits):((i + 1) * len(preds) // splits), :]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    return float(np.mean(scores)), float(np.std(scores))


@pytest.mark.parametrize("n,splits", [(50, 10), (23, 4)])
def test_inception_score_matches_references(n, splits):
    rng = np.random.default_rng(n)
    logits = rng.standard_normal((n, 1008)) * 3 + rng.standard_normal(1008)
    mean, std, scores = inception_score(logits, splits)
    assert (mean, std) == pytest.approx(_improved_gan_is(logits, splits), rel=1e-10)
    assert len(scores) == splits
    for shuffle in (False, True):
        reference = torch_fidelity.metric_isc.isc_features_to_metric(torch.from_numpy(logits), splits, shuffle, 2020)
        ours = inception_score(logits, splits, shuffle=shuffle, seed=2020)
        assert ours[:2] == pytest.approx(
            (reference["inception_score_mean"], reference["inception_score_std"]), rel=1e-10
        )
    with pytest.raises(DataError, match="at least"):
        inception_score(logits[: splits - 1], splits)


# -- the pipeline on a random network saved as the real weight files ------------------------------

@pytest.fixture(scope="session")
def random_inception(tmp_path_factory) -> Path:
    """A randomly initialised FID Inception saved as a plain state dict, with activations kept O(1)."""
    path = tmp_path_factory.mktemp("weights") / "inception.pth"
    torch.save(random_inception_state(), path)
    return path


@pytest.fixture
def hub_weights(random_inception, monkeypatch) -> Path:
    """$TORCH_HOME/hub/checkpoints holding both libraries' weight files; any download fails the test."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    folder.mkdir(parents=True)
    for name in (PT_FILE, TF_FILE):
        (folder / name).symlink_to(random_inception)

    def no_download(url, *args, **kwargs):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return folder


def _images(rng: np.random.Generator, sizes: list[tuple[int, int]], bright: float) -> list[np.ndarray]:
    """Smooth random colour fields plus noise: varied, image-like uint8 RGB."""
    images = []
    for h, w in sizes:
        coarse = torch.from_numpy(rng.random((1, 3, 4, 4), dtype=np.float32))
        smooth = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0]
        noisy = smooth.permute(1, 2, 0).numpy() * bright + rng.normal(0, 0.08, (h, w, 3))
        images.append((np.clip(noisy, 0, 1) * 255).round().astype(np.uint8))
    return images


def _write(images: list[np.ndarray], folder: Path) -> list[Path]:
    paths = [folder / f"{i:03d}.png" for i in range(len(images))]
    for image, path in zip(images, paths):
        save_png(image, path)
    return paths


def _samples(paths_pred: list[Path], paths_ref: list[Path]) -> tuple[list[torch.Tensor], list[dict]]:
    predictions = [to_tensor(read_image(p)) for p in paths_pred]
    samples = [{"id": p.stem, "clean": to_tensor(read_image(p)), "rainy": torch.zeros(3, 8, 8)} for p in paths_ref]
    return predictions, samples


def _reduced_stats(act1: np.ndarray, act2: np.ndarray) -> list[np.ndarray]:
    """pytorch-fid's statistics in an orthonormal basis of the subspace holding both sets' centred
    features and the mean difference: the Fréchet distance is unchanged (orthogonal invariance, and the
    covariances vanish outside it), but scipy's sqrtm runs on 9x9 instead of 2048x2048 (~1 min)."""
    mu1, mu2 = act1.mean(0), act2.mean(0)
    basis = np.linalg.qr(np.concatenate([act1 - mu1, act2 - mu2, (mu1 - mu2)[None]]).T)[0]
    sigma1, sigma2 = np.cov(act1, rowvar=False), np.cov(act2, rowvar=False)
    return [basis.T @ mu1, basis.T @ sigma1 @ basis, basis.T @ mu2, basis.T @ sigma2 @ basis]


def test_pytorch_fid_protocol_end_to_end(hub_weights, random_inception, tmp_path, monkeypatch):
    rng = np.random.default_rng(11)
    generated = _write(_images(rng, [(64, 48)] * 4, 0.6), tmp_path / "generated")
    # reference images of different sizes: resized one by one to 299 before batching
    reference = _write(_images(rng, [(72, 72), (80, 60), (72, 72), (50, 90)], 1.0), tmp_path / "reference")

    # pytorch-fid itself, finding the weights in $TORCH_HOME/hub/checkpoints (downloads fail)
    model = InceptionV3([3]).eval()
    saved = torch.load(random_inception, weights_only=True)
    assert torch.equal(model.blocks[3][2].branch_pool.conv.weight, saved["Mixed_7c.branch_pool.conv.weight"])
    act_gen = fid_score.get_activations(generated, model, batch_size=4, device="cpu", num_workers=0)
    act_ref = fid_score.get_activations(reference, model, batch_size=1, device="cpu", num_workers=0)
    expected_fid = _pytorch_fid_distance(*_reduced_stats(act_gen, act_ref))

    predictions, samples = _samples(generated, reference)
    fid = harness.create_metric("fid", batch_size=3, target_field="clean")
    assert fid.update(predictions[:2], samples[:2]) is None
    fid.update(predictions[2:], samples[2:])
    with pytest.warns(UserWarning, match="fewer than 2048"):
        value = fid.compute()["fid"]
    assert value == pytest.approx(expected_fid, rel=1e-3)
    assert value == pytest.approx(_exact_fid(act_gen, act_ref), rel=1e-5)
    details = fid.details()
    assert details["generated"]["images"] == details["reference"]["images"] == 4
    assert details["generated"]["computed"] == 4 and details["reference"]["source"] == "field 'clean'"
    assert details["rank_deficient"] is True
    convention = fid.convention()
    assert convention["weights_file"] == PT_FILE and convention["weights_sha256"] == sha256_file(random_inception)
    assert "align_corners=False" in convention["resize"] and convention["statistics_dtype"] == "float64"

    # everything below is served from the feature cache: the network must not run again
    def no_forward(*args, **kwargs):
        raise AssertionError("the network ran on cached images")

    monkeypatch.setattr(inception, "pool3_features", no_forward)
    from_folder = harness.create_metric("fid", reference_dir=str(tmp_path / "reference"))
    from_folder.update(predictions, [{"id": s["id"]} for s in samples])
    with pytest.warns(UserWarning):
        assert from_folder.compute()["fid"] == value
    assert from_folder.details()["reference"]["computed"] == 0
    assert from_folder.details()["reference"]["set_digest"] == details["reference"]["set_digest"]

    kid = harness.create_metric("kid", subsets=20, target_field="clean")
    kid.update(predictions, samples)
    result = kid.compute()
    reference_kid = torch_fidelity.metric_kid.kid_features_to_metric(
        torch.from_numpy(act_gen), torch.from_numpy(act_ref), kid_subsets=20, kid_subset_size=4, rng_seed=2020, verbose=False
    )
    assert result["kid"] == pytest.approx(reference_kid["kernel_inception_distance_mean"], rel=1e-4)
    assert result["kid-std"] == pytest.approx(reference_kid["kernel_inception_distance_std"], rel=1e-4)
    assert kid.details()["subset_size_used"] == 4 and kid.details()["generated"]["from_cache"] == 4

    score = harness.create_metric("is", splits=2)
    score.update(predictions + [s["clean"] for s in samples], samples + samples)
    logits = np.concatenate([act_gen, act_ref]) @ saved["fc.weight"].double().numpy().T
    reference_is = torch_fidelity.metric_isc.isc_features_to_metric(torch.from_numpy(logits), 2, False)
    result = score.compute()
    assert result["is"] == pytest.approx(reference_is["inception_score_mean"], rel=1e-5)
    assert result["is-std"] == pytest.approx(reference_is["inception_score_std"], rel=1e-4)
    assert len(score.details()["split_scores"]) == 2 and score.details()["images"]["computed"] == 0


def test_torch_fidelity_protocol_matches_torch_fidelity(hub_weights):
    rng = np.random.default_rng(12)
    images = _images(rng, [(40, 56), (299, 299), (120, 90), (333, 301)], 0.8)
    extractor = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(hub_weights / TF_FILE)
    )
    with torch.no_grad():
        outputs = [extractor(torch.from_numpy(im).permute(2, 0, 1)[None].contiguous()) for im in images]
    features = torch.cat([o[0] for o in outputs]).numpy()
    logits = torch.cat([o[1] for o in outputs])

    score = harness.create_metric("is", protocol="torch-fidelity", splits=2)
    score.update([to_tensor(im) for im in images], [{"id": str(i)} for i in range(len(images))])
    result = score.compute()
    reference = torch_fidelity.metric_isc.isc_features_to_metric(logits, 2, False)
    assert result["is"] == pytest.approx(reference["inception_score_mean"], rel=1e-5)
    assert result["is-std"] == pytest.approx(reference["inception_score_std"], rel=1e-3)
    np.testing.assert_allclose(score.images.features, features, rtol=1e-4, atol=1e-5 * np.abs(features).max())
    assert score.convention()["weights_file"] == TF_FILE and "TF1" in score.convention()["resize"]


# -- options, errors, hooks -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["fid", "kid", "is"])
def test_missing_weights_is_a_clear_data_error(name, monkeypatch):
    monkeypatch.delenv("HARNESS_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(DataError, match=PT_FILE) as error:
        harness.create_metric(name)
    assert str(Path(torch.hub.get_dir()) / "checkpoints") in str(error.value)
    assert f"`--metric-option {name}.weights=PATH` or `HARNESS_INCEPTION_WEIGHTS=PATH`" in str(error.value)
    with pytest.raises(DataError, match=TF_FILE):
        harness.create_metric(name, protocol="torch-fidelity")


def test_weights_from_option_and_environment(random_inception, tmp_path, monkeypatch):
    assert harness.create_metric("fid", weights=str(random_inception)).weights == random_inception
    monkeypatch.setenv("HARNESS_INCEPTION_WEIGHTS", str(random_inception))
    assert harness.create_metric("is").weights == random_inception
    monkeypatch.setenv("HARNESS_INCEPTION_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(DataError, match="missing.pth"):
        harness.create_metric("kid")


def test_torch_fidelity_protocol_without_the_library_says_how_to_install(random_inception, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", None)  # import fails
    with pytest.raises(UsageError, match=r'needs the torch-fidelity package \(pip install "harness\[fidelity\]"\)'):
        harness.create_metric("kid", protocol="torch-fidelity", weights=str(random_inception))
    assert harness.create_metric("kid", weights=str(random_inception)).protocol.name == "pytorch-fid"


def test_pickled_weights_are_refused_before_a_library_unpickles_them(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"fc.weight": torch.zeros(1008, 2048), "note": argparse.Namespace(a=1)}, path)
    metric = harness.create_metric("is", protocol="torch-fidelity", weights=str(path), batch_size=1)
    with pytest.raises(DataError, match="pickled objects are refused"):
        metric.update([torch.rand(3, 8, 8)], [{"id": "a"}])


def test_weights_that_do_not_fit_are_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(10, 2048)}, path)
    metric = harness.create_metric("is", weights=str(path), batch_size=1)
    with pytest.raises(DataError, match="does not fit"):
        metric.update([torch.rand(3, 8, 8)], [{"id": "a"}])


def test_reference_field_and_bad_inputs(hub_weights, tmp_path):
    fid = harness.create_metric("fid", target_field="reference")
    unpaired = {"id": "a", "image": torch.rand(3, 8, 8), "reference": torch.rand(3, 8, 8)}
    fid.update([torch.rand(3, 8, 8)], [unpaired])
    assert fid.details()["reference"]["source"] == "field 'reference'"
    with pytest.raises(DataError, match="sample .b. has no ground-truth field"):
        fid.update([torch.rand(3, 8, 8)], [{"id": "b", "rainy": torch.rand(3, 8, 8)}])
    with pytest.raises(DataError, match=r"expected a float tensor \(3, H, W\)"):
        fid.update([torch.rand(1, 8, 8)], [unpaired])
    with pytest.raises(DataError, match="is not a folder"):
        harness.create_metric("fid", reference_dir="/nonexistent/folder")
    bound = harness.create_metric("fid", target_field="reference")
    bound.bind_reference(harness.Reference((tmp_path / "z1.png", tmp_path / "z2.png"), "zebra-digest"))
    assert bound.reference_files == [tmp_path / "z1.png", tmp_path / "z2.png"]
    assert bound.reads()["reference"] == "zebra-digest" and bound.reads()["inception_weights"]
    with pytest.raises(DataError, match="holds no image files"):
        harness.create_metric("kid", reference_dir=str(tmp_path))
    with pytest.raises(UsageError, match="batch_size"):
        harness.create_metric("fid", batch_size=0)
    with pytest.raises(UsageError, match="splits"):
        harness.create_metric("is", splits=0)


def test_is_subclass_hook_scores_transformed_images(hub_weights, monkeypatch):
    """`images_to_score` decides what is scored: a subclass returning black images scores black images."""
    seen: list[np.ndarray] = []

    def record(self, images):
        seen.extend(images)
        return np.zeros((len(images), 2048), np.float32), [str(i) for i in range(len(images))], 0

    monkeypatch.setattr(inception.InceptionExtractor, "__call__", record)

    class Blackout(inception.InceptionScore):
        def images_to_score(self, predictions, samples):
            return [torch.zeros_like(p) for p in predictions]

    metric = Blackout(batch_size=2)
    metric.update([torch.rand(3, 5, 5), torch.rand(3, 5, 5)], [{"id": "a"}, {"id": "b"}])
    assert len(seen) == 2 and all(not image.any() for image in seen)
    assert inception.InceptionScore.higher_is_better and not inception.FID.higher_is_better
    assert harness.create_metric("is").outputs == frozenset({"image"})
