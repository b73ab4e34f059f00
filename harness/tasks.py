"""The built-in task definitions, registered through the same hook a third-party task would use."""

from __future__ import annotations

from typing import Callable

from .api import Task
from .hookspecs import hookimpl

IMAGE = "float32 tensor (3, H, W) in [0, 1], RGB"

DERAINING = Task(
    name="deraining",
    description="Remove rain streaks: rainy image in, clean image out.",
    inputs=("rainy",),
    target="clean",
    output="image",
    fields={"rainy": IMAGE, "clean": IMAGE},
)

INPAINTING = Task(
    name="inpainting",
    description="Fill the holes of an image: masked image and mask in, completed image out.",
    inputs=("masked", "mask"),
    target="image",
    output="image",
    fields={
        "image": IMAGE + " (ground truth)",
        "masked": IMAGE + " with the hole zeroed",
        "mask": "float32 tensor (1, H, W), 1 inside the hole",
    },
)

UNPAIRED_TRANSLATION = Task(
    name="unpaired-translation",
    description="Translate an image from domain A to domain B without paired ground truth.",
    inputs=("image",),
    target="reference",
    paired=False,
    output="image",
    fields={"image": IMAGE + " from the source domain", "reference": IMAGE + " from the target domain (unpaired)"},
)

POSE_TRANSFER = Task(
    name="pose-transfer",
    description="Render the person of a source image in a target pose.",
    inputs=("source", "source_pose", "target_pose"),
    # target_parsing: the target's map for methods' TS-GT settings (oracle target maps, as SPT's paper and demo);
    # only a method option that says so reads it, and that option is part of the run's record.
    optional_inputs=("source_parsing", "target_parsing"),
    target="target",
    output="image",
    fields={
        "source": IMAGE,
        "source_pose": "float32 tensor (K, 2) of (y, x) keypoints, -1 where missing",
        "target_pose": "float32 tensor (K, 2) of (y, x) keypoints, -1 where missing",
        "target": IMAGE + " (the same person in the target pose)",
    },
)

POSE_PARSING = Task(
    name="pose-parsing",
    description="Predict the semantic parsing map of a person in a target pose from a source image, its map and both poses.",
    inputs=("source", "source_parsing", "source_pose", "target_pose"),
    target="target_parsing",
    output="label-map",
    fields={
        "source": IMAGE,
        "source_parsing": "int64 tensor (H, W) of class labels (the dataset documents its classes)",
        "source_pose": "float32 tensor (K, 2) of (y, x) keypoints, -1 where missing",
        "target_pose": "float32 tensor (K, 2) of (y, x) keypoints, -1 where missing",
        "target_parsing": "int64 tensor (H, W): the labels of the same person in the target pose",
    },
)

REIDENTIFICATION = Task(
    name="reidentification",
    description="Retrieve images of the same person across cameras (and modalities): image in, embedding out.",
    # Cross-modality methods run a modality-specific encoder per image, so they see where it was taken.
    inputs=("image", "modality", "camid"),
    output="embedding",
    fields={
        "image": IMAGE,
        "pid": "int person id (-1 junk, 0 distractor where the protocol has them)",
        "camid": "int camera id",
        "modality": "str, e.g. 'visible' or 'infrared'",
        "role": "'query' or 'gallery' (evaluation splits), 'train' in training splits",
    },
)

DESCRIPTOR_INVERSION = Task(
    name="descriptor-inversion",
    description="Reconstruct an image from its local keypoints and descriptors.",
    inputs=("keypoints", "descriptors", "size"),
    target="image",
    output="image",
    fields={
        "keypoints": "float32 tensor (N, 4): x, y, scale, orientation",
        "descriptors": "float32 tensor (N, D)",
        "size": "(H, W) of the image to reconstruct",
        "image": IMAGE + " (ground truth)",
    },
)

BUILTIN_TASKS = (
    DERAINING, INPAINTING, UNPAIRED_TRANSLATION, POSE_TRANSFER, POSE_PARSING, REIDENTIFICATION, DESCRIPTOR_INVERSION,
)


@hookimpl
def harness_register_tasks(register: Callable[[Task], None]) -> None:
    for task in BUILTIN_TASKS:
        register(task)
