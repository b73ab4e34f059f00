"""`fid`, `kid`, `is`: Fréchet and kernel Inception distances and the Inception Score.

All three read the Inception-v3 "2015-12-05" network of the FID/IS papers as pytorch-fid or
torch-fidelity ship it (`inception_net`), never torchvision's. Images are quantised to uint8 first, as the PNG files pytorch-fid reads would be.

* Protocol ``pytorch-fid`` (default): weights ``pt_inception-2015-12-05-6726825d.pth``, PyTorch
  bilinear resize to 299, pool3 (2048-d) features; mean and ``np.cov`` (ddof 1) in float64.
* Protocol ``torch-fidelity``: weights ``weights-inception-2015-12-05-6726825d.pth``, TF1 bilinear
  resize (the TTUR graph's), (x - 128) / 128.

Features are extracted as images stream in, ``batch_size`` at a time, and cached by content: one
row per (extractor digest, image digest) in the ``features`` tier of the core cache
(`harness.run.cache`, ``$HARNESS_CACHE``, default ``~/.cache/harness``). A split's set digest is
only known after its last image, so the cache is keyed per image; ``details()`` records the set digests (sha256 of the sorted image digests).
Scoring a new method against a reference set seen before thus runs the network on its own images
only, and `fid`, `kid` and `is` on the same images share one extraction.

Functional twins (float64, no hidden state)::

    feature_statistics(features) -> (mu, sigma)
    frechet_distance(mu1, sigma1, mu2, sigma2) -> float
    kernel_inception_distance(features1, features2, subsets=100, subset_size=1000, degree=3,
                              gamma=None, coef0=1.0, seed=2020) -> (mean, std, per-subset values)
    inception_score(logits, splits=10, shuffle=False, seed=2020) -> (mean, std, per-split values)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import sqlite3
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy
import scipy.linalg.lapack
import torch
from scipy.special import log_softmax, logsumexp

from harness import DataError, Metric, Option, Reference, Sample, UsageError, hookimpl
from harness.checkpoints import find_weights
from harness.data import digest_files, list_images, read_image, sha256_file, to_uint8
from harness.run.cache import CACHE_ENV, Cache
from harness.run.devices import resolve_device
from harness_plugins.shared.inception_net import (
    FEATURE_DIM,
    PROTOCOLS,
    InceptionNetwork,
    Protocol,
    load_network,
    pool3_features,
)

IMPLEMENTATION = "harness_plugins.metrics.inception"
VERSION = "1"
WEIGHTS_ENV = "HARNESS_INCEPTION_WEIGHTS"
"""Where a sample's real image is, first present wins: deraining, pose transfer, unpaired translation
(its ``image`` is the *source* domain, so ``reference`` must win over it), inpainting/inversion."""


# -- the math (functional twins) ------------------------------------------------------------------

def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (``np.cov``, ddof 1) of (N, D) features, in float64."""
    x = _float64(features)
    if x.ndim != 2 or len(x) < 2:
        raise DataError(f"feature statistics need an (N, D) array with N >= 2, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _drop_noise(eigenvalues: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix, with those below the solver's rounding level (n·ε·λmax, as a
    pseudo-inverse's rank cut) set to exactly zero: a singular covariance then contributes exactly
    nothing instead of √(rounding noise), which is ~1e-8 per eigenvalue."""
    cut = len(eigenvalues) * np.finfo(np.float64).eps * max(eigenvalues.max(initial=0.0), 0.0)
    return np.where(eigenvalues > cut, eigenvalues, 0.0)


def _psd_root(sigma: np.ndarray) -> np.ndarray:
    """B (D × rank) with sigma = B·Bᵀ: LAPACK's pivoted Cholesky (``dpstrf``), which stops at the
    numerical rank (LAPACK's default tolerance D·ε·max diagonal). A covariance of N ≤ D samples is
    singular; the factor then has N − 1 columns and what follows shrinks with it."""
    factor, pivots, rank, info = scipy.linalg.lapack.dpstrf(sigma, lower=1, tol=-1.0)
    if info < 0:
        raise DataError(f"Fréchet distance: pivoted Cholesky rejected the covariance (LAPACK info {info})")
    root = np.empty((len(sigma), rank))
    root[pivots - 1] = np.tril(factor)[:, :rank]
    return root


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """‖mu1 − mu2‖² + tr Σ1 + tr Σ2 − 2·tr √(Σ1Σ2), all in float64.

    tr √(Σ1Σ2) is the sum of the square roots of the eigenvalues of Σ1Σ2. With Σ1 = B·Bᵀ, the
    non-zero eigenvalues of Σ1Σ2 = B·(Bᵀ·Σ2) are those of Bᵀ·Σ2·B, a symmetric positive
    semi-definite matrix, so they come from a symmetric solver: real, backward stable, one pivoted
    Cholesky and one ``eigvalsh`` instead of ``scipy.linalg.sqrtm``'s complex Schur form (an order of
    magnitude slower at D = 2048, and wrong in scipy 1.11.2–1.12) or torch-fidelity's non-symmetric
    ``eigvals``. Singular covariances (N ≤ D) need no ε regularisation: B simply has fewer columns,
    and eigenvalues at the rounding level count as exactly zero (`_drop_noise`).
    """
    mu1, mu2, sigma1, sigma2 = (_float64(a) for a in (mu1, mu2, sigma1, sigma2))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise DataError(
            f"Fréchet distance needs means of shape (D,) and covariances (D, D); got {mu1.shape}, "
            f"{sigma1.shape}, {mu2.shape}, {sigma2.shape}"
        )
    if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
        raise DataError("Fréchet distance: the feature statistics contain NaN or infinity")
    root = _psd_root(sigma1)
    inner = root.T @ sigma2 @ root
    trace_sqrt = np.sqrt(_drop_noise(np.linalg.eigvalsh((inner + inner.T) / 2))).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> float:
    """Unbiased MMD² with the kernel k(a, b) = (γ·aᵀb + c)^degree (diagonals of Kxx, Kyy left out)."""
    m = len(x)
    kxx = (x @ x.T * gamma + coef0) ** degree
    kyy = (y @ y.T * gamma + coef0) ** degree
    kxy = (x @ y.T * gamma + coef0) ** degree
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.mean())


def kernel_inception_distance(
    features1: np.ndarray | torch.Tensor,
    features2: np.ndarray | torch.Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 2020,
) -> tuple[float, float, np.ndarray]:
    """KID as torch-fidelity computes it: per subset, ``subset_size`` rows of each set drawn without
    replacement by one ``np.random.RandomState(seed)`` (set 1 then set 2), the unbiased polynomial
    MMD²; mean and ``np.std`` (ddof 0) over subsets. ``subset_size`` is capped by the smaller set;
    ``gamma=None`` means 1 / D. float64 throughout (torch-fidelity: float32)."""
    x, y = _float64(features1), _float64(features2)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise DataError(f"KID needs two (N, D) feature arrays of equal D, got {x.shape} and {y.shape}")
    size = min(subset_size, len(x), len(y))
    if size < 2:
        raise DataError(f"KID needs at least 2 images per set, got {len(x)} and {len(y)}")
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        a = x[rng.choice(len(x), size, replace=False)]
        b = y[rng.choice(len(y), size, replace=False)]
        values[i] = _polynomial_mmd2(a, b, degree, gamma, coef0)
    return float(values.mean()), float(values.std()), values


def inception_score(
    logits: np.ndarray | torch.Tensor, splits: int = 10, shuffle: bool = False, seed: int = 2020
) -> tuple[float, float, np.ndarray]:
    """IS of improved-gan: softmax over the 1008 logits, ``splits`` consecutive chunks (rows
    i·N/splits … (i+1)·N/splits − 1), per chunk exp(mean KL(p(y|x) ‖ p(y))); mean and ``np.std``
    (ddof 0). ``shuffle`` first permutes rows with ``np.random.RandomState(seed)`` (torch-fidelity's default)."""
    z = _float64(logits)
    n = len(z)
    if z.ndim != 2 or n < splits:
        raise DataError(f"IS with {splits} splits needs at least {splits} images, got logits of shape {z.shape}")
    if shuffle:
        z = z[np.random.RandomState(seed).permutation(n)]
    log_p = log_softmax(z, axis=1)
    scores = np.empty(splits)
    for i in range(splits):
        part = log_p[i * n // splits : (i + 1) * n // splits]
        log_marginal = logsumexp(part, axis=0) - np.log(len(part))  # log of the split's mean p(y)
        kl = (np.exp(part) * (part - log_marginal)).sum(axis=1).mean()
        scores[i] = np.exp(kl)
    return float(scores.mean()), float(scores.std()), scores


def _float64(array: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=np.float64)


# -- feature extraction with a content-addressed cache --------------------------------------------

def image_digest(image: np.ndarray) -> str:
    """sha256 of a uint8 (H, W, 3) image's shape and pixels: equal for a PNG on disk and the tensor read from it."""
    digest = hashlib.sha256(repr(image.shape).encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def set_digest(digests: Sequence[str]) -> str:
    """sha256 of the sorted image digests: the identity of an image (multi)set, whatever its order."""
    return hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()


class FeatureCache:
    """Feature rows in the core cache's ``features`` tier, one namespace per extractor digest."""

    TIER = "features"

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def get(self, extractor: str, digests: Sequence[str]) -> dict[str, np.ndarray]:
        try:
            rows = self.cache.get_rows(self.TIER, extractor, digests)
        except (OSError, sqlite3.Error) as exc:
            raise DataError(f"cannot use the feature cache in {self.cache.root}: {exc} "
                            f"(set ${CACHE_ENV} to a writable folder or pass cache=false)") from None
        return {image: np.frombuffer(vector, dtype=np.float32) for image, vector in rows.items()}

    def put(self, extractor: str, rows: dict[str, np.ndarray]) -> None:
        self.cache.put_rows(self.TIER, extractor,
                            {image: np.asarray(v, dtype=np.float32).tobytes() for image, v in rows.items()})


@functools.lru_cache(maxsize=4)
def _weights_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


@functools.lru_cache(maxsize=1)
def _network(protocol: str, path: str, size: int, mtime_ns: int, device: str) -> InceptionNetwork:
    """One loaded network shared by the metrics of a run (keyed by protocol, file identity and device)."""
    return load_network(PROTOCOLS[protocol], Path(path), device)


class InceptionExtractor:
    """uint8 images → pool3 features (float32), through the cache when one is given."""

    def __init__(self, weights: Path, protocol: Protocol, device: str, batch_size: int, cache: FeatureCache | None):
        self.protocol, self.device, self.batch_size, self.cache = protocol, device, batch_size, cache
        stat = weights.stat()
        self._identity = (str(weights), stat.st_size, stat.st_mtime_ns)
        self.weights_sha256 = _weights_sha256(*self._identity)
        self.digest = hashlib.sha256(json.dumps({
            "implementation": f"{IMPLEMENTATION}/{VERSION}",
            "protocol": protocol.name,
            "weights_sha256": self.weights_sha256,
            "torch": torch.__version__,
            "device": torch.device(device).type,
        }, sort_keys=True).encode()).hexdigest()

    @property
    def network(self) -> InceptionNetwork:
        return _network(self.protocol.name, *self._identity, self.device)

    def fc_weight(self) -> np.ndarray:
        """The (1008, 2048) classifier weight in float64: IS logits are pool3 · Wᵀ, without the bias."""
        return self.network.fc.weight.detach().cpu().double().numpy()

    def __call__(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[str], int]:
        """Features, image digests and the number of images the network actually ran on."""
        digests = [image_digest(image) for image in images]
        known = self.cache.get(self.digest, digests) if self.cache else {}
        missing = [i for i, d in enumerate(digests) if d not in known]
        fresh: dict[str, np.ndarray] = {}
        # full float32 convolutions on GPUs (TF32 would move features by ~1e-3), deterministic algorithms
        exact = (torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False)
                 if torch.device(self.device).type == "cuda" else contextlib.nullcontext())
        with torch.inference_mode(), exact:
            for start in range(0, len(missing), self.batch_size):
                index = missing[start : start + self.batch_size]
                output = pool3_features(self.network, [images[i] for i in index], self.device).numpy()
                fresh.update((digests[i], row) for i, row in zip(index, output))
        if self.cache and fresh:
            self.cache.put(self.digest, fresh)
        known.update(fresh)
        features = np.stack([known[d] for d in digests]) if digests else np.empty((0, FEATURE_DIM), np.float32)
        return features, digests, len(missing)


@dataclasses.dataclass
class FeatureSet:
    """The features of one image set, accumulated batch by batch."""

    chunks: list[np.ndarray] = dataclasses.field(default_factory=list)
    digests: list[str] = dataclasses.field(default_factory=list)
    computed: int = 0

    def add(self, result: tuple[np.ndarray, list[str], int]) -> None:
        features, digests, computed = result
        self.chunks.append(features)
        self.digests.extend(digests)
        self.computed += computed

    @property
    def features(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.empty((0, FEATURE_DIM), np.float32)

    def record(self) -> dict[str, Any]:
        n = len(self.digests)
        return {"images": n, "computed": self.computed, "from_cache": n - self.computed, "set_digest": set_digest(self.digests)}


# -- the metrics ----------------------------------------------------------------------------------

def _quantise(image: Any, what: str) -> np.ndarray:
    """float (3, H, W) in [0, 1] → uint8 (H, W, 3), rounded as a saved PNG."""
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if hasattr(image, "shape") else type(image).__name__
        raise DataError(f"{what}: expected a float tensor (3, H, W) in [0, 1], got {shape}")
    return to_uint8(image)


class InceptionMetric(Metric):
    """What `fid`, `kid` and `is` share: weights lookup, the extractor, buffered streaming, the convention."""

    _positive: ClassVar[tuple[str, ...]] = ("batch_size",)
    outputs = frozenset({"image"})
    version = VERSION
    options: ClassVar[tuple[Option, ...]] = (
        Option("protocol", "pytorch-fid", "Inception pipeline: pytorch-fid (torch bilinear resize) or "
               "torch-fidelity (TF1 bilinear resize, as TTUR)", choices=tuple(PROTOCOLS)),
        Option("weights", None, f"Inception weights file; default ${WEIGHTS_ENV} (pytorch-fid protocol only), "
               "else the protocol's file in $TORCH_HOME/hub/checkpoints/", type=str),
        Option("batch_size", 50, "images per network forward pass"),
        Option("device", "auto", "torch device for the network; auto = the run's device (from Python: cuda if available)"),
        Option("cache", True, "cache features per image in the features tier of $HARNESS_CACHE (default ~/.cache/harness)"),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in self._positive:
            if self.config[name] < 1:
                raise UsageError(f"{self.name}: option {name!r} must be at least 1, got {self.config[name]}")
        self.protocol = PROTOCOLS[self.config["protocol"]]
        self.protocol.import_library()  # a missing optional library is named before any work
        self.weights = self._find_weights()
        self._extractor: InceptionExtractor | None = None
        self.reset()

    def _find_weights(self) -> Path:
        protocol = self.protocol
        env = WEIGHTS_ENV if protocol.name == "pytorch-fid" else None
        try:
            return find_weights(protocol.weights_file, self.config["weights"], env=env,
                                option=f"--metric-option {self.name}.weights=PATH")
        except DataError as exc:
            raise DataError(
                f"{self.name}: the Inception weights of the {protocol.name} protocol are missing: {exc}. "
                f"The file is {protocol.weights_file}, the one {protocol.name} downloads from {protocol.weights_url}"
            ) from None

    @property
    def extractor(self) -> InceptionExtractor:
        if self._extractor is None:
            device = resolve_device(self.device or "auto") if self.config["device"] == "auto" else self.config["device"]
            cache = FeatureCache(Cache()) if self.config["cache"] else None
            self._extractor = InceptionExtractor(self.weights, self.protocol, device, self.config["batch_size"], cache)
        return self._extractor

    def _stream(self, target: FeatureSet, pending: list[np.ndarray], images: Sequence[np.ndarray], flush: bool = False) -> None:
        """Queue uint8 images and run full batches (all of them when ``flush``)."""
        pending.extend(images)
        size = self.config["batch_size"]
        while len(pending) >= size or (flush and pending):
            target.add(self.extractor(pending[:size]))
            del pending[:size]

    def reads(self) -> dict[str, str]:
        stat = self.weights.stat()
        return {"inception_weights": _weights_sha256(str(self.weights), stat.st_size, stat.st_mtime_ns)}

    def convention(self) -> dict[str, Any]:
        extractor = self.extractor
        return {
            "implementation": IMPLEMENTATION,
            "protocol": self.protocol.name,
            "weights_file": self.weights.name,
            "weights_sha256": extractor.weights_sha256,
            "network": self.protocol.network,
            "input": "predictions clamped to [0, 1] and rounded to uint8 (as a saved PNG)",
            "resize": self.protocol.resize,
            "normalisation": self.protocol.normalisation,
            "network_dtype": "float32 (on CUDA: cuDNN deterministic, TF32 off)",
            "statistics_dtype": "float64",
            "device": extractor.device,
            "feature_extractor_digest": extractor.digest,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
        }


class _AgainstReference(InceptionMetric):
    """A metric comparing the predictions' features with a reference set's: ``reference_dir``, else the
    dataset's `Reference` (bound by the runner, independent of --limit), else each sample's target field."""

    higher_is_better = False
    uses_reference = True
    options = InceptionMetric.options + (
        Option("reference_dir", None, "folder of reference images (top level only, as pytorch-fid); "
               "default: the samples' ground truth", type=str),
        Option("reference_field", None, "sample field holding the reference image; default: the task's "
               "ground-truth field", type=str),
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.reference_files: list[Path] | None = None
        self._reference_digest: str | None = None
        if self.config["reference_dir"] is not None:
            folder = Path(self.config["reference_dir"]).expanduser()
            if not folder.is_dir():
                raise DataError(f"{self.name}: reference_dir {folder} is not a folder (expected a folder of image files)")
            self.reference_files = list_images(folder)
            if not self.reference_files:
                raise DataError(f"{self.name}: reference_dir {folder} holds no image files (.png, .jpg, ...)")

    def bind_reference(self, reference: Reference) -> None:
        """The dataset's reference set, used unless ``reference_dir`` or ``reference_field`` was given."""
        if self.config["reference_dir"] is None and self.config["reference_field"] is None:
            self.reference_files = list(reference.files)
            self._reference_digest = reference.digest

    def reads(self) -> dict[str, str]:
        reads = super().reads()
        if self._reference_digest is None and self.config["reference_dir"] is not None and self.reference_files:
            self._reference_digest = digest_files(self.reference_files, self.reference_files[0].parent)
        if self._reference_digest is not None:
            reads["reference"] = self._reference_digest
        return reads

    def reset(self) -> None:
        self.generated, self.reference = FeatureSet(), FeatureSet()
        self._pending: dict[str, list[np.ndarray]] = {"generated": [], "reference": []}
        self._reference_from: str | None = None
        self._finished = False

    def update(self, predictions: list[Any], samples: list[Sample]) -> None:
        self._stream(self.generated, self._pending["generated"],
                     [_quantise(p, f"{self.name}: prediction for sample {s['id']!r}") for p, s in zip(predictions, samples)])
        if self.reference_files is None:
            self._stream(self.reference, self._pending["reference"], [self._reference_image(s) for s in samples])

    def _reference_image(self, sample: Sample) -> np.ndarray:
        field = self.config["reference_field"] or self.target_field_of(sample)
        if field not in sample:
            raise DataError(f"{self.name}: sample {sample['id']!r} has no field {field!r} (option reference_field)")
        self._reference_from = f"field {field!r}"
        return _quantise(sample[field], f"{self.name}: field {field!r} of sample {sample['id']!r}")

    def _read_reference_dir(self, files: list[Path]) -> None:
        size = self.config["batch_size"]
        for start in range(0, len(files), size):
            self._stream(self.reference, self._pending["reference"], [read_image(path) for path in files[start : start + size]])
        self._reference_from = f"folder {files[0].parent}"

    def _features(self) -> tuple[np.ndarray, np.ndarray]:
        """Both sets' features, once every queued image has gone through the network."""
        if not self._finished:
            if self.reference_files is not None:
                self._read_reference_dir(self.reference_files)
            for name, target in (("generated", self.generated), ("reference", self.reference)):
                self._stream(target, self._pending[name], [], flush=True)
            self._finished = True
        return self.generated.features, self.reference.features

    def details(self) -> dict[str, Any]:
        return {
            "generated": self.generated.record(),
            "reference": {**self.reference.record(), "source": self._reference_from},
            "feature_extractor_digest": self.extractor.digest,
        }


class FID(_AgainstReference):
    """Fréchet Inception Distance between the predictions and a reference image set."""

    name = "fid"
    description = "Fréchet Inception Distance (pool3 features of the FID Inception-v3; pytorch-fid protocol by default)"
    paper = "Heusel et al., GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium, NeurIPS 2017"

    def compute(self) -> dict[str, float]:
        generated, reference = self._features()
        if min(len(generated), len(reference)) < FEATURE_DIM:
            warnings.warn(
                f"fid: {len(generated)} generated and {len(reference)} reference images, fewer than {FEATURE_DIM}: "
                "the covariances are rank-deficient and FID is biased upwards; compare only at equal sample counts",
                stacklevel=2,
            )
        return {"fid": frechet_distance(*feature_statistics(generated), *feature_statistics(reference))}

    def details(self) -> dict[str, Any]:
        n = min(len(self.generated.digests), len(self.reference.digests))
        return {**super().details(), "rank_deficient": n < FEATURE_DIM}

    def convention(self) -> dict[str, Any]:
        return {**super().convention(), "covariance": "np.cov, ddof 1",
                "sqrtm": "tr sqrt(S1 S2) = sum sqrt(eigvalsh(Bᵀ S2 B)), S1 = B Bᵀ by pivoted Cholesky "
                "(LAPACK dpstrf, numerical rank); eigenvalues below D·eps·max set to 0; no ε"}


class KID(_AgainstReference):
    """Kernel Inception Distance: unbiased polynomial-kernel MMD² over random subsets, mean and std."""

    name = "kid"
    description = "Kernel Inception Distance (polynomial MMD² on FID Inception pool3 features, torch-fidelity defaults)"
    paper = "Bińkowski et al., Demystifying MMD GANs, ICLR 2018"
    options = _AgainstReference.options + (
        Option("subsets", 100, "number of random subsets"),
        Option("subset_size", 1000, "images per subset (capped by the smaller set)"),
        Option("degree", 3, "polynomial kernel degree"),
        Option("gamma", None, "polynomial kernel scale; default 1 / feature dimension", type=float),
        Option("coef0", 1.0, "polynomial kernel offset"),
        Option("seed", 2020, "seed of the subset sampler (np.random.RandomState)"),
    )
    _positive = ("batch_size", "subsets", "subset_size")

    def reset(self) -> None:
        super().reset()
        self._values: np.ndarray | None = None

    def compute(self) -> dict[str, float]:
        generated, reference = self._features()
        c = self.config
        mean, std, self._values = kernel_inception_distance(
            generated, reference, c["subsets"], c["subset_size"], c["degree"], c["gamma"], c["coef0"], c["seed"]
        )
        return {"kid": mean, "kid-std": std}

    def details(self) -> dict[str, Any]:
        n = min(len(self.generated.digests), len(self.reference.digests), self.config["subset_size"])
        values = None if self._values is None else self._values.tolist()
        return {**super().details(), "subset_size_used": n, "subset_values": values}


class InceptionScore(InceptionMetric):
    """Inception Score of the predictions (improved-gan protocol: 1008 logits without the bias, softmax,
    ``splits`` consecutive splits, exp of the mean KL, mean and std).

    Subclass hook: ``update`` scores the images returned by ``images_to_score(predictions, samples)``
    (float (3, H, W) tensors in [0, 1], one per sample), which returns the predictions here. A variant
    overrides only that method, e.g. ``mask-is`` multiplies each prediction by a body mask built from
    the sample's target pose; quantisation, caching and the score itself stay shared.
    """

    name = "is"
    description = "Inception Score (improved-gan protocol: unbiased 1008-class logits, 10 sequential splits)"
    paper = "Salimans et al., Improved Techniques for Training GANs, NeurIPS 2016"
    needs_target = False
    options = InceptionMetric.options + (
        Option("splits", 10, "number of splits"),
        Option("shuffle", False, "permute images before splitting (torch-fidelity's default; the original does not)"),
        Option("seed", 2020, "seed of the permutation when shuffle is on (np.random.RandomState)"),
    )
    _positive = ("batch_size", "splits")

    def reset(self) -> None:
        self.images, self._pending = FeatureSet(), []
        self._scores: np.ndarray | None = None

    def images_to_score(self, predictions: list[Any], samples: list[Sample]) -> list[torch.Tensor]:
        """The images to score for a batch, one per sample; override to transform them (e.g. mask-IS)."""
        return list(predictions)

    def update(self, predictions: list[Any], samples: list[Sample]) -> None:
        images = self.images_to_score(predictions, samples)
        self._stream(self.images, self._pending,
                     [_quantise(image, f"{self.name}: image for sample {s['id']!r}") for image, s in zip(images, samples)])

    def compute(self) -> dict[str, float]:
        self._stream(self.images, self._pending, [], flush=True)
        logits = _float64(self.images.features) @ self.extractor.fc_weight().T
        mean, std, self._scores = inception_score(logits, self.config["splits"], self.config["shuffle"], self.config["seed"])
        return {"is": mean, "is-std": std}

    def details(self) -> dict[str, Any]:
        scores = None if self._scores is None else self._scores.tolist()
        return {"images": self.images.record(), "split_scores": scores, "feature_extractor_digest": self.extractor.digest}

    def convention(self) -> dict[str, Any]:
        return {**super().convention(), "logits": "pool3 · fc.weightᵀ (1008 classes, no bias), float64",
                "std": "np.std, ddof 0"}


@hookimpl
def harness_register_metrics(register: Callable[[type], None]) -> None:
    for metric in (FID, KID, InceptionScore):
        register(metric)
