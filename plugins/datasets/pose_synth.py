"""`pose-synth`: bundled synthetic people for pose transfer, in the Def-GAN file layout (no download).

Why: pose-transfer methods must train and be scored on a CPU in minutes, and the parsers of the real
Def-GAN/PATN files must be exercised by the same code path. So this set is *written* in exactly that
layout (``pose-synth-annotation-{split}.csv`` with ``name:keypoints_y:keypoints_x``, pair lists
``pose-synth-pairs-{split}.csv`` with ``from,to``, PNG images, parsing-map PNGs) on first use under the
data root, and read back by `pose_common.PoseDataset` like DeepFashion and Market-1501.

Each person is an articulated figure drawn from its OpenPose COCO-18 skeleton, 128x64 like Market-1501:
capsule limbs, a trapezoid torso, an elliptic head. Everything that identifies a person is fixed by
its seed and the same in every picture of it: build, skin, hair (short or long), an optional hat,
upper clothes (colour, plain / stripes / checks / a tinted scikit-image texture, short or long
sleeves), trousers, shorts or a skirt, shoes, and the background (a blurred crop of a scikit-image
photograph, shifted by a few pixels per picture). Every picture has its own pose: position, scale,
front or back view, arm and leg angles. The pair's target is therefore predictable from the source's
appearance and the target skeleton, and copying the source is clearly beatable (its body is where the
source pose put it).

Keypoints are the rounded joint positions; in back views the nose and eyes are missing (-1), and about
one picture in 16 lacks a hip, as OpenPose often does, so Def-GAN's filter drops it from the pairs.
Parsing maps use the contract's 10 labels, SPT's (`pose_common.SPT_CLASSES`): shoes count as their leg and a
hat as hair, as `pose_common.LIP_TO_SPT` merges LIP's.

Splits: 24 train identities x 10 pictures, 10 test identities x 6 pictures (identities disjoint, as
Market-1501's). Train pairs: every same-person ordered pair (Def-GAN construction); test pairs: 100 of
them drawn as Def-GAN draws its 12,000 (``DataFrame.sample(random_state=0)``).
"""

from __future__ import annotations

import colorsys
import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from harness import Option, hookimpl
from harness_plugins.shared.pose_maps import COCO18_NAMES

from . import bundled
from .pose_common import (
    DEFAULT_PARSING_FOLDER,
    MISSING,
    PARSING_LABELS,
    PoseDataset,
    PoseParsingDataset,
    build_pairs,
    format_annotations,
    format_pairs,
    read_annotations,
)

GENERATOR = "harness pose-synth"
GENERATOR_VERSION = 2
"""2: SPT's ten parsing classes (left/right arms and legs, face 1, hair 2); 1 had merged sides, shoes and hat."""
SEED = 20190403
SIZE = (128, 64)
SUPERSAMPLE = 2
IDENTITIES = {"train": 24, "test": 10}
PICTURES = {"train": 10, "test": 6}
FIRST_PID = {"train": 1, "test": 1 + IDENTITIES["train"]}
TEST_PAIRS = 100
BACKGROUNDS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
TEXTURES = ("brick", "grass", "gravel")
PATTERNS = ("plain", "stripes", "checks", "texture")
LOWER = ("pants", "shorts", "skirt")
J = {name: index for index, name in enumerate(COCO18_NAMES)}

# parsing labels (pose_common.SPT_CLASSES); sides are the person's own (R: COCO's R joints)
BACKGROUND, FACE, HAIR, UPPER, PANTS, SKIRT, LEFT_ARM, RIGHT_ARM, LEFT_LEG, RIGHT_LEG = range(10)
ARM = {"L": LEFT_ARM, "R": RIGHT_ARM}
LEG = {"L": LEFT_LEG, "R": RIGHT_LEG}


def _colour(rng: np.random.Generator, saturation=(0.35, 1.0), value=(0.25, 0.95)) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(*saturation), rng.uniform(*value)))


@dataclasses.dataclass(frozen=True)
class Person:
    """What stays the same in every picture of one synthetic person."""

    height: float
    shoulders: float
    hips: float
    limb: float
    head: float
    skin: np.ndarray
    hair: np.ndarray
    long_hair: bool
    hat: np.ndarray | None
    upper: np.ndarray
    pattern: str
    pattern_colour: np.ndarray
    pattern_period: float
    texture: str
    long_sleeves: bool
    lower: str
    lower_colour: np.ndarray
    shoes: np.ndarray
    background: str
    background_offset: tuple[int, int]
    background_tint: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Person:
        return cls(
            height=rng.uniform(0.82, 0.92), shoulders=rng.uniform(0.2, 0.27), hips=rng.uniform(0.13, 0.18),
            limb=rng.uniform(0.036, 0.05), head=rng.uniform(0.9, 1.1),
            skin=np.array(colorsys.hsv_to_rgb(rng.uniform(0.03, 0.1), rng.uniform(0.25, 0.6), rng.uniform(0.45, 0.95))),
            hair=_colour(rng, (0.2, 0.7), (0.05, 0.5)), long_hair=bool(rng.random() < 0.4),
            hat=_colour(rng) if rng.random() < 0.25 else None,
            upper=_colour(rng), pattern=PATTERNS[int(rng.integers(len(PATTERNS)))], pattern_colour=_colour(rng),
            pattern_period=rng.uniform(0.035, 0.07), texture=TEXTURES[int(rng.integers(len(TEXTURES)))],
            long_sleeves=bool(rng.random() < 0.5), lower=LOWER[int(rng.integers(len(LOWER)))],
            lower_colour=_colour(rng, (0.1, 0.9), (0.15, 0.8)), shoes=_colour(rng, (0.0, 0.5), (0.05, 0.6)),
            background=BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))],
            background_offset=(int(rng.integers(0, 1 << 16)), int(rng.integers(0, 1 << 16))),
            background_tint=0.75 + 0.25 * rng.random(3),
        )


def skeleton(person: Person, rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """A random pose of ``person``: 18 COCO (y, x) joints in pixels of ``size`` and whether it is a back view."""
    height, width = size
    scale = person.height * rng.uniform(0.88, 1.0) * height
    feet = height * rng.uniform(0.93, 0.98)
    cx = width * rng.uniform(0.4, 0.6)
    back = bool(rng.random() < 0.3)
    side = 1.0 if back else -1.0  # x direction of the person's right side in the image
    head_len = 0.13 * scale * person.head
    neck = np.array([feet - scale + head_len, cx])
    hip_y = neck[0] + 0.33 * scale
    points = np.full((18, 2), np.nan)
    points[J["neck"]] = neck
    half_shoulder, half_hip = person.shoulders * scale / 2, person.hips * scale / 2
    lean = rng.uniform(-0.04, 0.04) * scale
    for prefix, sign in (("R", side), ("L", -side)):
        shoulder = neck + [0.02 * scale, sign * half_shoulder]
        upper_angle = np.deg2rad(rng.uniform(-10, 100))  # from hanging down, outwards
        bend = np.deg2rad(rng.uniform(0, 110))
        upper_len, fore_len = 0.17 * scale, 0.16 * scale
        elbow = shoulder + upper_len * np.array([np.cos(upper_angle), sign * np.sin(upper_angle)])
        fore_angle = upper_angle + bend * (1 if rng.random() < 0.5 else -1)
        wrist = elbow + fore_len * np.array([np.cos(fore_angle), sign * np.sin(fore_angle)])
        hip = np.array([hip_y, cx + lean + sign * half_hip])
        thigh_angle = np.deg2rad(rng.uniform(-5, 30))
        knee = hip + 0.25 * scale * np.array([np.cos(thigh_angle), sign * np.sin(thigh_angle)])
        shin_angle = thigh_angle - np.deg2rad(rng.uniform(0, 35))
        ankle = knee + 0.24 * scale * np.array([np.cos(shin_angle), sign * np.sin(shin_angle)])
        for joint, point in (("sho", shoulder), ("elb", elbow), ("wri", wrist), ("hip", hip), ("kne", knee), ("ank", ankle)):
            points[J[prefix + joint]] = point
    nose = neck - [0.45 * head_len, -rng.uniform(-0.03, 0.03) * scale]
    points[J["nose"]] = nose
    for prefix, sign in (("R", side), ("L", -side)):
        points[J[prefix + "eye"]] = nose + [-0.22 * head_len, sign * 0.2 * head_len]
        points[J[prefix + "ear"]] = nose + [-0.12 * head_len, sign * 0.42 * head_len]
    return points, back


def _capsule(yy: np.ndarray, xx: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    d = b - a
    t = np.clip(((yy - a[0]) * d[0] + (xx - a[1]) * d[1]) / max(float(d @ d), 1e-9), 0.0, 1.0)
    return (yy - a[0] - t * d[0]) ** 2 + (xx - a[1] - t * d[1]) ** 2 <= radius * radius


def _polygon(yy: np.ndarray, xx: np.ndarray, corners: list[np.ndarray]) -> np.ndarray:
    """Inside of a convex polygon given clockwise or counter-clockwise."""
    inside_pos = np.ones_like(yy, dtype=bool)
    inside_neg = np.ones_like(yy, dtype=bool)
    for index, a in enumerate(corners):
        b = corners[(index + 1) % len(corners)]
        cross = (b[1] - a[1]) * (yy - a[0]) - (b[0] - a[0]) * (xx - a[1])
        inside_pos &= cross >= 0
        inside_neg &= cross <= 0
    return inside_pos | inside_neg


def _ellipse(yy: np.ndarray, xx: np.ndarray, centre: np.ndarray, ry: float, rx: float) -> np.ndarray:
    return ((yy - centre[0]) / ry) ** 2 + ((xx - centre[1]) / rx) ** 2 <= 1.0


@dataclasses.dataclass
class Sources:
    """The scikit-image pictures the renderer samples (loaded once per generation)."""

    backgrounds: dict[str, np.ndarray]
    textures: dict[str, np.ndarray]

    @classmethod
    def load(cls) -> Sources:
        from skimage import data

        backgrounds = {name: bundled.source_photo(name).astype(np.float64) / 255.0 for name in BACKGROUNDS}
        textures = {name: getattr(data, name)().astype(np.float64) / 255.0 for name in TEXTURES}
        return cls(backgrounds, textures)


def _background(person: Person, sources: Sources, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    photo = sources.backgrounds[person.background]
    height, width = shape
    oy = person.background_offset[0] % (photo.shape[0] - height - 8) + int(rng.integers(0, 8))
    ox = person.background_offset[1] % (photo.shape[1] - width - 8) + int(rng.integers(0, 8))
    crop = ndimage.gaussian_filter(photo[oy : oy + height, ox : ox + width], (3, 3, 0))
    return 0.35 + 0.45 * crop * person.background_tint  # muted, so the person stays the salient object


def render(person: Person, sources: Sources, rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One picture: uint8 RGB (H, W, 3), uint8 SPT labels (H, W), float (18, 2) keypoints (-1 missing)."""
    height, width = size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE
    points, back = skeleton(person, rng, (height, width))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    canvas = _background(person, sources, rng, (height, width))
    labels = np.zeros((height, width), dtype=np.uint8)

    def paint(mask: np.ndarray, colour: np.ndarray, label: int) -> None:
        canvas[mask] = colour if np.ndim(colour) == 1 else colour[mask]
        labels[mask] = label

    p = {name: points[index] for name, index in J.items()}
    scale = float(np.linalg.norm(p["neck"] - (p["Rank"] + p["Lank"]) / 2)) / 0.85
    limb = person.limb * scale
    shade = 0.85  # the far (back-view) or lower layers are a little darker
    # legs with lower clothes
    for prefix in ("R", "L"):
        hip, knee, ankle = p[prefix + "hip"], p[prefix + "kne"], p[prefix + "ank"]
        thigh, shin = _capsule(yy, xx, hip, knee, limb * 1.15), _capsule(yy, xx, knee, ankle, limb)
        paint(thigh | shin, person.skin * shade, LEG[prefix])
        if person.lower == "pants":
            paint(thigh | shin, person.lower_colour, PANTS)
        elif person.lower == "shorts":
            paint(thigh & (yy < (hip[0] + knee[0]) / 2 + 0.3 * (knee[0] - hip[0])), person.lower_colour, PANTS)
        paint(_ellipse(yy, xx, ankle + [limb * 0.3, 0], limb * 0.8, limb * 1.3), person.shoes, LEG[prefix])
    if person.lower == "skirt":
        knee_y = (p["Rkne"][0] + p["Lkne"][0]) / 2
        hem = (p["Rhip"][0] + knee_y) / 2 + 0.25 * (knee_y - p["Rhip"][0])
        spread = abs(p["Rhip"][1] - p["Lhip"][1]) / 2 + limb * 2.2
        centre = (p["Rhip"][1] + p["Lhip"][1]) / 2
        left, right = min(p["Rhip"][1], p["Lhip"][1]) - limb, max(p["Rhip"][1], p["Lhip"][1]) + limb
        corners = [np.array([p["Rhip"][0] - limb, left]), np.array([p["Rhip"][0] - limb, right]),
                   np.array([hem, centre + spread]), np.array([hem, centre - spread])]
        paint(_polygon(yy, xx, corners), person.lower_colour, SKIRT)
    # torso with the upper clothes' pattern, in torso-local coordinates (same on every picture)
    sho_l, sho_r = sorted((p["Rsho"], p["Lsho"]), key=lambda q: q[1])
    hip_l, hip_r = sorted((p["Rhip"], p["Lhip"]), key=lambda q: q[1])
    torso = _polygon(yy, xx, [sho_l + [-limb * 0.3, -limb * 0.6], sho_r + [-limb * 0.3, limb * 0.6],
                              hip_r + [limb * 0.8, limb * 0.9], hip_l + [limb * 0.8, -limb * 0.9]])
    paint(torso, person.upper, UPPER)
    u, v = (yy - p["neck"][0]) / (person.pattern_period * scale), (xx - p["neck"][1]) / (person.pattern_period * scale)
    if person.pattern == "stripes":
        paint(torso & ((u % 1.0) < 0.45), person.pattern_colour, UPPER)
    elif person.pattern == "checks":
        paint(torso & (((np.floor(u) + np.floor(v)) % 2) == 0), person.pattern_colour, UPPER)
    elif person.pattern == "texture":
        grey = sources.textures[person.texture]
        ty = np.clip((yy - p["neck"][0]).astype(int) + 100, 0, grey.shape[0] - 1)
        tx = np.clip((xx - p["neck"][1]).astype(int) + 100, 0, grey.shape[1] - 1)
        textured = (0.55 + 0.45 * grey[ty, tx])[..., None] * person.upper
        paint(torso, textured, UPPER)
    # arms, sleeves
    for prefix in ("R", "L"):
        shoulder, elbow, wrist = p[prefix + "sho"], p[prefix + "elb"], p[prefix + "wri"]
        upper_arm, forearm = _capsule(yy, xx, shoulder, elbow, limb * 0.9), _capsule(yy, xx, elbow, wrist, limb * 0.8)
        paint(upper_arm | forearm, person.skin, ARM[prefix])
        sleeve = (upper_arm | forearm) if person.long_sleeves else (upper_arm & _capsule(yy, xx, shoulder, (shoulder + elbow) / 2, limb * 1.05))
        paint(sleeve, person.upper * 0.92, UPPER)
    # head: neck, face, hair, hat
    head_len = float(np.linalg.norm(p["neck"] - p["nose"])) / 0.45
    centre = p["nose"] + [-0.12 * head_len, 0.0]
    paint(_capsule(yy, xx, p["neck"] + [limb * 0.3, 0], centre, limb * 0.9), person.skin * 0.92, FACE)
    if person.long_hair:  # hangs behind the head, down to the shoulders
        hanging = (np.abs(xx - centre[1]) < 0.42 * head_len) & (yy > centre[0]) & (yy < p["neck"][0] + 0.3 * head_len)
        paint(hanging, person.hair * 0.9, HAIR)
    head = _ellipse(yy, xx, centre, 0.5 * head_len, 0.38 * head_len)
    paint(head, person.skin, FACE)
    paint(head if back else head & (yy < centre[0] - 0.15 * head_len), person.hair, HAIR)
    if person.hat is not None:
        paint(_ellipse(yy, xx, centre - [0.42 * head_len, 0], 0.22 * head_len, 0.5 * head_len), person.hat, HAIR)
    if not back:  # eyes, so the face has a front
        for prefix in ("R", "L"):
            paint(_ellipse(yy, xx, p[prefix + "eye"], 0.05 * head_len, 0.06 * head_len), person.hair * 0.5, FACE)

    image = canvas.reshape(size[0], SUPERSAMPLE, size[1], SUPERSAMPLE, 3).mean(axis=(1, 3))
    image = image + rng.normal(0.0, 0.01, image.shape)
    label_map = labels[SUPERSAMPLE // 2 :: SUPERSAMPLE, SUPERSAMPLE // 2 :: SUPERSAMPLE]
    keypoints = np.round(points / SUPERSAMPLE)
    if back:
        keypoints[[J["nose"], J["Reye"], J["Leye"]]] = MISSING
    if rng.random() < 1 / 16:
        keypoints[J["Rhip" if rng.random() < 0.5 else "Lhip"]] = MISSING
    outside = (keypoints[:, 0] < 0) | (keypoints[:, 0] >= size[0]) | (keypoints[:, 1] < 0) | (keypoints[:, 1] >= size[1])
    keypoints[outside] = MISSING
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), label_map, keypoints.astype(np.float32)


def picture_name(pid: int, picture: int) -> str:
    return f"{pid:04d}_{picture:02d}.png"


def generate(folder: Path) -> dict[str, Any]:
    """Render both splits into ``folder`` in the Def-GAN layout; returns the manifest."""
    sources = Sources.load()
    files: dict[str, str] = {}
    for stream, split in enumerate(IDENTITIES):
        images, maps, poses = {}, {}, {}
        for offset in range(IDENTITIES[split]):
            pid = FIRST_PID[split] + offset
            person = Person.draw(np.random.default_rng([SEED, stream, pid]))
            for picture in range(PICTURES[split]):
                image, label_map, keypoints = render(person, sources, np.random.default_rng([SEED, stream, pid, picture]), SIZE)
                name = picture_name(pid, picture)
                images[f"{split}/{name}"], maps[f"parsing/{split}/{name}"], poses[name] = image, label_map, keypoints
        files.update(bundled.write_pngs(folder, images))
        files.update(bundled.write_pngs(folder, maps))
        annotation = folder / f"pose-synth-annotation-{split}.csv"
        annotation.write_text(format_annotations(poses))
        # pairs from the annotations as written (rounded), exactly as for a real release
        pairs = build_pairs(read_annotations(annotation), sample=TEST_PAIRS if split == "test" else None)
        (folder / f"pose-synth-pairs-{split}.csv").write_text(format_pairs(pairs))
        for path in (annotation, folder / f"pose-synth-pairs-{split}.csv"):
            files[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {
        "generator": GENERATOR, "version": GENERATOR_VERSION, "seed": SEED,
        "sources": {name: hashlib.sha256(bundled.source_photo(name).tobytes()).hexdigest() for name in BACKGROUNDS},
        "files": files,
    }


class PoseSynth(PoseDataset):
    """Bundled synthetic people in the Def-GAN layout: 24 train / 10 test identities, 128x64, parsing maps."""

    name = "pose-synth"
    description = (
        "Bundled pose-transfer set: articulated synthetic people (24 train x 10 / 10 test x 6 pictures, 128x64) with "
        "COCO-18 keypoints, 10-class parsing maps and Def-GAN pair lists (100 test pairs); generated on first use."
    )
    version = str(GENERATOR_VERSION)
    image_size = SIZE
    training_preset = "market"  # 128x64 like Market-1501
    test_pairs = TEST_PAIRS
    default_metrics = {
        "ssim": {"convention": "defgan"}, "mask-ssim": {}, "is": {}, "mask-is": {}, "fid": {},
    }
    source = (
        f"generated locally by harness_plugins.datasets.pose_synth (generator version {GENERATOR_VERSION}, seed {SEED}); "
        "delete the folder to regenerate it."
    )
    layout = (
        "manifest.json\n"
        "pose-synth-annotation-{train,test}.csv   name:keypoints_y:keypoints_x (COCO-18, -1 missing)\n"
        "pose-synth-pairs-{train,test}.csv        from,to\n"
        "train/0001_00.png ...  test/0025_00.png ...\n"
        "parsing/{train,test}/<same names>.png    SPT's 10-class labels"
    )
    official_counts = {
        "train images": IDENTITIES["train"] * PICTURES["train"], "test images": IDENTITIES["test"] * PICTURES["test"],
        "test pairs": TEST_PAIRS,
    }
    options = (
        Option("parsing", DEFAULT_PARSING_FOLDER, PoseDataset.parsing_option_help, type=str),
        Option("parsing_labels", "spt", "labels of the parsing PNGs (the bundled maps are already in SPT's classes)",
               choices=PARSING_LABELS),
    )

    def prepare(self) -> None:
        bundled.ensure_generated(self.root, GENERATOR, GENERATOR_VERSION, SEED, generate)

    def annotation_path(self, split: str) -> Path:
        return self.root / f"pose-synth-annotation-{split}.csv"

    def pair_source(self, split: str) -> Path:
        return self.root / f"pose-synth-pairs-{split}.csv"

    def image_path(self, split: str, name: str) -> Path:
        return self.root / split / name

    def counts(self) -> dict[str, int]:
        return {"train images": len(self.poses("train")), "test images": len(self.poses("test")),
                "train pairs": len(self.pairs("train")), "test pairs": len(self.pairs("test"))}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "generator": {"version": GENERATOR_VERSION, "seed": SEED}}


class PoseSynthParsing(PoseParsingDataset, PoseSynth):
    """pose-synth for the pose-parsing task: predict the target picture's parsing map."""

    name = "pose-synth-parsing"
    description = "Bundled pose-synth pairs for the pose-parsing task (predict the target pose's 10-class parsing map)."


@hookimpl
def harness_register_datasets(register: Callable[[type], None]) -> None:
    register(PoseSynth)
    register(PoseSynthParsing)
