"""`reid-synth` and `vireid-synth`: bundled synthetic pedestrians, rendered deterministically on the fly.

Why: re-identification tests, the quick start and CPU training need people seen by several cameras
(and in two modalities) without any download or signed agreement. Every identity has its own body
shape (height, build, head, leg and arm proportions), hair, skin, clothing colours, clothing cut
(sleeves, trousers or shorts), a top pattern (plain, stripes, checks, dots) and a bag; every camera
its own viewpoint (front, back, left, right), illumination (gain and colour cast), background
(two-tone gradient with blobs and a floor), blur and noise; every image its own pose (walking phase,
arm swing), position, scale and exposure.

Infrared cameras render a thermal-like single-channel picture (replicated to 3 channels, as SYSU-MM01
stores its IR images): skin is hot, each garment has its own emissivity, drawn independently of its
colour, with only a weak dependence on its lightness, and patterns keep a fraction of their contrast.
Clothing colour, the strongest visible cue, is therefore mostly lost, so cross-modality matching has
to rely on shape, cut and pattern, as it does on the real data.

* ``reid-synth``: 6 RGB cameras, Market-1501-like (query = the first image of each person in each
  camera; gallery = the rest; the ``market1501`` protocol drops same-camera matches).
* ``vireid-synth``: SYSU-MM01-like camera ids (RGB 1, 2, 4, 5; IR 3, 6) evaluated with the ``sysu``
  protocol (seeded gallery trials), or ``variant=regdb``: one visible and one thermal camera taking
  each picture at the same instant (same pose), evaluated with the ``regdb`` protocol.

Nothing is written to disk: ``index`` lists the (person, camera, image) triples and ``load`` renders
one. The generator version is part of the dataset version, so a changed renderer changes the records.
"""

from __future__ import annotations

import colorsys
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import ndimage

from harness import Dataset, Option, Sample, hookimpl

GENERATOR_VERSION = 1
SEED = 20200614
SUPERSAMPLE = 2
VIEWS = ("front", "back", "left", "right")
PATTERNS = ("plain", "hstripes", "vstripes", "checks", "dots")
SPLIT_STREAM = {"train": 0, "test": 1}


# -- identities and cameras ----------------------------------------------------------------------
def _colour(rng: np.random.Generator, saturation: tuple[float, float] = (0.35, 1.0), value: tuple[float, float] = (0.15, 0.95)) -> np.ndarray:
    hue = rng.random()
    return np.array(colorsys.hsv_to_rgb(hue, rng.uniform(*saturation), rng.uniform(*value)))


@dataclasses.dataclass(frozen=True)
class Person:
    """Everything that identifies one synthetic pedestrian."""

    height: float
    shoulders: float
    waist: float
    head: float
    leg_width: float
    arm_width: float
    torso_ratio: float
    skin: np.ndarray
    hair: np.ndarray
    long_hair: bool
    top: np.ndarray
    bottom: np.ndarray
    shoes: np.ndarray
    short_sleeves: bool
    shorts: bool
    pattern: str
    pattern_colour: np.ndarray
    pattern_period: float
    bag: str
    bag_colour: np.ndarray
    heat_top: float
    heat_bottom: float
    heat_pattern: float
    heat_bag: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Person:
        top, bottom = _colour(rng), _colour(rng, (0.1, 0.9), (0.1, 0.8))

        def heat(colour: np.ndarray) -> float:  # emissivity independent of colour, barely of lightness
            return float(np.clip(0.3 + 0.35 * rng.random() + 0.12 * (1.0 - colour.mean()), 0.0, 1.0))

        return cls(
            height=rng.uniform(0.74, 0.92), shoulders=rng.uniform(0.2, 0.33), waist=rng.uniform(0.15, 0.27),
            head=rng.uniform(0.85, 1.2), leg_width=rng.uniform(0.045, 0.08), arm_width=rng.uniform(0.03, 0.05),
            torso_ratio=rng.uniform(0.85, 1.15),
            skin=np.array(colorsys.hsv_to_rgb(rng.uniform(0.03, 0.1), rng.uniform(0.25, 0.6), rng.uniform(0.35, 0.95))),
            hair=_colour(rng, (0.2, 0.7), (0.05, 0.6)), long_hair=bool(rng.random() < 0.4),
            top=top, bottom=bottom, shoes=_colour(rng, (0.0, 0.5), (0.05, 0.7)),
            short_sleeves=bool(rng.random() < 0.5), shorts=bool(rng.random() < 0.3),
            pattern=PATTERNS[int(rng.integers(len(PATTERNS)))], pattern_colour=_colour(rng),
            pattern_period=rng.uniform(0.05, 0.11),
            bag=("none", "backpack", "handbag")[int(rng.integers(3))], bag_colour=_colour(rng, (0.1, 0.8), (0.1, 0.8)),
            heat_top=heat(top), heat_bottom=heat(bottom), heat_pattern=float(rng.uniform(-0.25, 0.25)),
            heat_bag=float(rng.uniform(0.05, 0.3)),
        )


@dataclasses.dataclass(frozen=True)
class Camera:
    """One camera's viewpoint, light, background and optics."""

    camid: int
    infrared: bool
    view: str
    gain: float
    cast: np.ndarray
    sky: np.ndarray
    floor: np.ndarray
    horizon: float
    blobs: tuple[tuple[float, float, float, np.ndarray], ...]
    blur: float
    noise: float

    @classmethod
    def draw(cls, rng: np.random.Generator, camid: int, infrared: bool, view: str) -> Camera:
        if infrared:
            level = rng.uniform(0.1, 0.3)
            sky, floor = np.full(3, level), np.full(3, level + rng.uniform(-0.08, 0.08))
            cast = np.ones(3)
        else:
            sky, floor, cast = _colour(rng, (0.05, 0.5), (0.3, 0.9)), _colour(rng, (0.05, 0.4), (0.2, 0.7)), 1.0 + rng.uniform(-0.18, 0.18, 3)
        blobs = tuple(  # background clutter, muted so the person stays the salient object
            (rng.random(), rng.random(), rng.uniform(0.03, 0.15),
             0.5 * sky + 0.5 * (np.full(3, rng.uniform(0.05, 0.45)) if infrared else _colour(rng, (0.0, 0.8), (0.1, 0.9))))
            for _ in range(int(rng.integers(2, 6)))
        )
        return cls(
            camid=camid, infrared=infrared, view=view, gain=rng.uniform(0.65, 1.25), cast=cast, sky=sky, floor=floor,
            horizon=rng.uniform(0.45, 0.8), blobs=blobs, blur=rng.uniform(0.6, 1.4) if infrared else rng.uniform(0.0, 0.8),
            noise=rng.uniform(0.01, 0.04),
        )


# -- rendering ------------------------------------------------------------------------------------
def _capsule(yy: np.ndarray, xx: np.ndarray, a: tuple[float, float], b: tuple[float, float], radius: float) -> np.ndarray:
    """Pixels within ``radius`` of the segment a–b (limbs)."""
    (ay, ax), (by, bx) = a, b
    dy, dx = by - ay, bx - ax
    t = np.clip(((yy - ay) * dy + (xx - ax) * dx) / max(dy * dy + dx * dx, 1e-9), 0.0, 1.0)
    return (yy - ay - t * dy) ** 2 + (xx - ax - t * dx) ** 2 <= radius * radius


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _pattern(person: Person, yy: np.ndarray, xx: np.ndarray, unit: float, mirror: bool) -> np.ndarray:
    period = person.pattern_period * unit
    u, v = yy / period, (-xx if mirror else xx) / period
    if person.pattern == "hstripes":
        return (u % 1.0) < 0.45
    if person.pattern == "vstripes":
        return (v % 1.0) < 0.45
    if person.pattern == "checks":
        return ((np.floor(u) + np.floor(v)) % 2) == 0
    if person.pattern == "dots":
        return ((u % 1.0) - 0.5) ** 2 + ((v % 1.0) - 0.5) ** 2 < 0.09
    return np.zeros_like(yy, dtype=bool)


def render(person: Person, camera: Camera, rng: np.random.Generator, size: tuple[int, int], phase: float) -> np.ndarray:
    """One uint8 (H, W, 3) picture of ``person`` taken by ``camera`` at walking ``phase``; ``rng`` draws
    the framing (position, scale) and exposure."""
    height, width = size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    infrared = camera.infrared

    def shade(colour: np.ndarray, heat: float) -> np.ndarray:
        return np.full(3, heat) if infrared else colour

    # background: sky/floor gradient with blobs
    t = np.clip((yy / height - camera.horizon) * 6.0 + 0.5, 0.0, 1.0)[..., None]
    canvas = (1 - t) * camera.sky + t * camera.floor
    for by, bx, radius, colour in camera.blobs:
        mask = _ellipse(yy, xx, by * height * camera.horizon, bx * width, radius * height, radius * width * 1.5)
        canvas[mask] = colour

    # pose and placement
    unit = person.height * rng.uniform(0.92, 1.05) * height
    feet = height * rng.uniform(0.95, 0.99)
    top = feet - unit
    cx = width * (0.5 + rng.uniform(-0.08, 0.08))
    side = camera.view in ("left", "right")
    squeeze = 0.62 if side else 1.0
    mirror = camera.view in ("back", "right")
    stride = (0.16 if side else 0.06) * unit * np.sin(phase)
    swing = (0.12 if side else 0.04) * unit * np.sin(phase)
    head_ry, head_rx = 0.065 * unit * person.head, 0.05 * unit * person.head
    neck = top + 2 * head_ry
    hip = neck + 0.36 * unit * person.torso_ratio
    half_shoulder, half_waist = person.shoulders * unit * squeeze / 2, person.waist * unit * squeeze / 2
    leg_r, arm_r = person.leg_width * unit / 2, person.arm_width * unit / 2
    knee = hip + 0.5 * (feet - hip)

    layers: list[tuple[np.ndarray, np.ndarray]] = []
    backpack: list[tuple[np.ndarray, np.ndarray, float]] = []
    if person.bag == "backpack" and camera.view != "front":
        offset = 0.0 if camera.view == "back" else (-1 if camera.view == "left" else 1) * half_shoulder * 1.2
        pack = (np.abs(xx - cx - offset) < 0.8 * half_shoulder + 0.02 * unit) & (yy > neck + 0.03 * unit) & (yy < hip - 0.02 * unit)
        backpack.append((pack, person.bag_colour, person.heat_bag))
    if camera.view != "back":  # seen from the side, the pack is behind the body
        layers += backpack
    for sign in (-1, 1):  # legs: thigh and shin, trousers or shorts
        foot = (feet - leg_r, cx + sign * (0.6 * half_waist if not side else 0.0) + sign * stride)
        hip_point = (hip, cx + sign * 0.5 * half_waist)
        leg = _capsule(yy, xx, hip_point, foot, leg_r)
        layers.append((leg, person.skin if person.shorts else person.bottom, 0.9 if person.shorts else person.heat_bottom))
        if person.shorts:
            layers.append((leg & (yy < knee), person.bottom, person.heat_bottom))
        layers.append((_ellipse(yy, xx, feet - leg_r * 0.8, foot[1] + sign * leg_r * 0.4, leg_r * 0.9, leg_r * 1.5), person.shoes, 0.35))
    # torso: trapezoid from shoulders to hips, with its pattern
    frac = np.clip((yy - neck) / max(hip - neck, 1e-6), 0.0, 1.0)
    torso = (yy >= neck) & (yy <= hip + leg_r) & (np.abs(xx - cx) <= half_shoulder + (half_waist - half_shoulder) * frac)
    layers.append((torso, person.top, person.heat_top))
    pattern = torso & _pattern(person, yy - neck, xx - cx, unit, mirror)
    layers.append((pattern, person.pattern_colour, person.heat_top + person.heat_pattern))
    for sign in (-1, 1) if not side else (1 if camera.view == "right" else -1,):  # arms
        shoulder = (neck + 0.03 * unit, cx + sign * (half_shoulder - arm_r * 0.5))
        hand = (hip + 0.02 * unit, shoulder[1] + sign * 0.03 * unit - sign * swing * (1 if sign > 0 else -1))
        arm = _capsule(yy, xx, shoulder, hand, arm_r)
        layers.append((arm, person.skin, 0.9))
        sleeve_end = shoulder[0] + (0.35 if person.short_sleeves else 0.9) * (hand[0] - shoulder[0])
        layers.append((arm & (yy < sleeve_end), person.top, person.heat_top))
        if person.bag == "handbag" and sign == 1:
            layers.append((_ellipse(yy, xx, hand[0] + 0.04 * unit, hand[1], 0.05 * unit, 0.04 * unit), person.bag_colour, person.heat_bag))
    if camera.view == "back":  # seen from behind, the pack covers the torso
        layers += backpack
    head_y = top + head_ry
    layers.append((_ellipse(yy, xx, head_y, cx, head_ry, head_rx), person.skin, 0.95))
    hair = _ellipse(yy, xx, head_y - 0.3 * head_ry, cx, head_ry * 0.8, head_rx * 1.05)
    if camera.view == "back":
        hair |= _ellipse(yy, xx, head_y, cx, head_ry, head_rx)
    if person.long_hair:
        hair |= (np.abs(xx - cx) < head_rx) & (yy > head_y) & (yy < neck + 0.08 * unit) & (camera.view != "front")
    layers.append((hair, person.hair, 0.6))

    for mask, colour, heat in layers:
        canvas[mask] = shade(colour, float(np.clip(heat, 0, 1)))

    # optics: downsample (anti-aliasing), light, blur, noise
    canvas = canvas.reshape(size[0], SUPERSAMPLE, size[1], SUPERSAMPLE, 3).mean(axis=(1, 3))
    canvas = canvas * camera.gain * rng.uniform(0.9, 1.1) * camera.cast
    if camera.blur > 0:
        canvas = ndimage.gaussian_filter(canvas, (camera.blur, camera.blur, 0))
    canvas = canvas + rng.normal(0.0, camera.noise, canvas.shape if not infrared else canvas.shape[:2] + (1,))
    if infrared:
        canvas = np.repeat(canvas.mean(axis=2, keepdims=True), 3, axis=2)
    return np.round(np.clip(canvas, 0.0, 1.0) * 255.0).astype(np.uint8)


# -- datasets -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Scene:
    """Which cameras a synthetic set has: camid → (infrared?, viewpoint)."""

    cameras: dict[int, tuple[bool, str]]
    protocol: str
    paired: bool = False
    """All cameras take each picture at the same instant (same pose), as RegDB's dual camera does."""


SCENES = {
    "market": Scene({1: (False, "front"), 2: (False, "back"), 3: (False, "left"), 4: (False, "right"), 5: (False, "front"), 6: (False, "back")}, "market1501"),
    "sysu": Scene({1: (False, "front"), 2: (False, "back"), 3: (True, "front"), 4: (False, "left"), 5: (False, "right"), 6: (True, "back")}, "sysu"),
    "regdb": Scene({1: (False, "front"), 2: (True, "front")}, "regdb", paired=True),
}


class _SyntheticPedestrians(Dataset):
    """Shared renderer-backed dataset: identities × cameras × images, drawn from fixed seeds."""

    task = "reidentification"
    splits = ("test", "train")
    default_split = "test"
    source = "bundled: rendered on the fly by harness_plugins.datasets.reid_synth (no download)"
    layout = "none: nothing is read from disk (the root is unused)"
    version = f"gen{GENERATOR_VERSION}"
    scene_names: ClassVar[tuple[str, ...]]
    stream: ClassVar[int]

    options = (
        Option("identities", 0, "people per split (0: the set's default)"),
        Option("images", 3, "pictures of each person per camera"),
        Option("height", 128, "image height in pixels"),
        Option("width", 64, "image width in pixels"),
    )
    default_identities: ClassVar[dict[str, int]] = {"train": 32, "test": 16}

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(root, **options)
        self.scene = SCENES[self.scene_name()]
        self._people: dict[str, list[Person]] = {}
        self._cameras = {
            camid: Camera.draw(np.random.default_rng([SEED, self.stream, 100 + camid]), camid, infrared, view)
            for camid, (infrared, view) in self.scene.cameras.items()
        }

    def scene_name(self) -> str:
        return self.scene_names[0]

    def identities(self, split: str) -> int:
        return self.config["identities"] or self.default_identities[split]

    def people(self, split: str) -> list[Person]:
        if split not in self._people:
            stream = SPLIT_STREAM[split]
            self._people[split] = [
                Person.draw(np.random.default_rng([SEED, self.stream, stream, pid])) for pid in range(self.identities(split))
            ]
        return self._people[split]

    def index(self, split: str) -> list[Sample]:
        rows = []
        first_pid = 1 if split == "train" else 1 + self.identities("train")  # identities never overlap
        for pid in range(len(self.people(split))):
            for camid, (infrared, _) in self.scene.cameras.items():
                for image in range(self.config["images"]):
                    rows.append({
                        "id": f"c{camid}/p{first_pid + pid:04d}/{image:02d}", "pid": first_pid + pid, "camid": camid,
                        "modality": "infrared" if infrared else "visible", "role": self._role(split, infrared, image),
                        "paths": {}, "render": (split, pid, camid, image),
                    })
        rows.sort(key=lambda row: (row["camid"], row["pid"], row["id"]))
        return rows

    def _role(self, split: str, infrared: bool, image: int) -> str:
        if split == "train":
            return "train"
        if self.scene.protocol == "market1501":
            return "query" if image == 0 else "gallery"
        return "query" if infrared else "gallery"

    def load(self, row: Sample) -> Sample:
        split, pid, camid, image = row["render"]
        pose_camera = min(self.scene.cameras) if self.scene.paired else camid  # paired cameras share the pose
        phase = np.random.default_rng([SEED, self.stream, SPLIT_STREAM[split], pid, pose_camera, image, 3]).uniform(0, 2 * np.pi)
        rng = np.random.default_rng([SEED, self.stream, SPLIT_STREAM[split], pid, camid, image, 7])
        pixels = render(self.people(split)[pid], self._cameras[camid], rng, (self.config["height"], self.config["width"]), phase)
        sample = {key: value for key, value in row.items() if key not in ("paths", "render")}
        sample["image"] = torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255.0)
        return sample

    def count(self, split: str) -> int:
        return len(self.index(split))

    def describe(self) -> dict[str, Any]:
        return {
            "generator": f"harness reid_synth v{GENERATOR_VERSION}", "seed": SEED, "scene": self.scene_name(),
            "cameras": {camid: {"infrared": infrared, "view": view} for camid, (infrared, view) in self.scene.cameras.items()},
            "identities": {split: self.identities(split) for split in self.splits},
            "chance_rank1_percent": 100.0 / self.identities("test"),
        }


class ReidSynth(_SyntheticPedestrians):
    """Synthetic RGB pedestrians, 6 cameras, Market-1501-style query/gallery."""

    name = "reid-synth"
    description = "Bundled synthetic pedestrians (32 train / 16 test people, 6 RGB cameras), Market-1501 protocol; rendered on the fly."
    scene_names = ("market",)
    stream = 0
    default_metrics = {name: {"protocol": "market1501"} for name in ("cmc", "map", "minp")}


class VIReidSynth(_SyntheticPedestrians):
    """Synthetic visible-infrared pedestrians: SYSU-MM01-like cameras, or a RegDB-like paired variant."""

    name = "vireid-synth"
    description = (
        "Bundled synthetic visible-infrared pedestrians (32 train / 16 test people): SYSU-like RGB cameras 1, 2, 4, 5 "
        "and IR 3, 6 (sysu protocol), or variant=regdb (paired visible/thermal); rendered on the fly."
    )
    scene_names = ("sysu", "regdb")
    stream = 1
    options = _SyntheticPedestrians.options + (
        Option("variant", "sysu", "sysu: 4 RGB + 2 IR cameras, sysu protocol; regdb: one paired visible/thermal camera, regdb protocol",
               choices=("sysu", "regdb")),
    )
    default_metrics = {name: {"protocol": "sysu"} for name in ("cmc", "map", "minp")}

    def scene_name(self) -> str:
        return self.config["variant"]

    def metric_params(self, metric: str) -> dict[str, Any]:
        params = super().metric_params(metric)
        return {**params, "protocol": self.scene.protocol} if params else params


@hookimpl
def harness_register_datasets(register: Callable[[type], None]) -> None:
    register(ReidSynth)
    register(VIReidSynth)
