"""An unpackaged third-party plugin, loaded with --plugins-dir, that exercises the core end to end.

It adds a tiny in-memory deraining dataset (images from a seeded generator), a metric and a method
that can be told to crash after some samples, so core behaviour can be tested without any built-in.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from harness import DataError, Dataset, Method, Metric, Option, Reference, hookimpl


class DemoPairs(Dataset):
    """Six seeded 8×8 pairs; the root must exist and contain READY."""

    name = "demo-pairs"
    task = "deraining"
    splits = ("train", "test")
    default_metrics = {"demo-mae": {}}
    source = "made up by the test suite"
    layout = "ROOT/READY"
    options = (Option("corrupt_at", -1, "raise a DataError when reading this sample index (-1: never)"),)

    def verify(self, split: str) -> None:
        if not (self.root / "READY").is_file():
            raise DataError(f"{self.root}: missing READY; expected layout {self.layout}")

    def files(self, split: str) -> list[Path]:
        return [self.root / "READY"]

    def count(self, split: str) -> int:
        return 6

    def index(self, split: str):
        return [{"id": f"{index:03d}", "split": split, "position": index} for index in range(6)]

    def load(self, row):
        if row["position"] == self.config["corrupt_at"]:
            raise DataError(f"{self.root / 'READY'}: sample {row['id']} is corrupt (expected a readable image)")
        generator = torch.Generator().manual_seed(0 if row["split"] == "test" else 1)
        for _ in range(row["position"] + 1):
            clean = torch.rand(3, 8, 8, generator=generator)
            rain = torch.rand(3, 8, 8, generator=generator) * 0.5
        return {"id": row["id"], "rainy": (clean + rain).clamp(0, 1), "clean": clean}


class DemoUnpaired(Dataset):
    """Horses in, zebras as an unpaired reference (4 inputs, a reference set of 5 files)."""

    name = "demo-unpaired"
    task = "unpaired-translation"
    default_metrics = {"demo-mae": {}}

    def files(self, split):
        return sorted(self.root.glob("*.txt"))

    def samples(self, split):
        generator = torch.Generator().manual_seed(2)
        for index in range(4):
            yield {"id": f"{index:03d}", "image": torch.rand(3, 8, 8, generator=generator),
                   "reference": torch.rand(3, 8, 8, generator=generator)}

    def reference(self, split):
        files = tuple(sorted(self.root.glob("*.txt")))
        return Reference(files, "digest-of-" + ",".join(f.name for f in files), "the zebra folder")


class DemoMean(Metric):
    """Mean prediction value against the bound reference set's size: a distribution metric stand-in."""

    name = "demo-mean"
    needs_target = False
    uses_reference = True

    def bind_reference(self, reference):
        self.reference_digest = reference.digest

    def reads(self):
        return {"reference": self.reference_digest} if hasattr(self, "reference_digest") else {}

    def reset(self):
        self.total, self.count = 0.0, 0

    def update(self, predictions, samples):
        self.total += sum(float(p.mean()) for p in predictions)
        self.count += len(predictions)

    def compute(self):
        return {"mean": self.total / self.count}


class DemoMae(Metric):
    """Mean absolute error against the clean image (``scale`` multiplies it, to tell labels apart)."""

    name = "demo-mae"
    higher_is_better = False
    options = (Option("scale", 1.0, "multiply the error by this", choices=None),)
    preset_option = "scale"

    def reset(self) -> None:
        self.values: list[float] = []

    def update(self, predictions, samples):
        batch = [self.config["scale"] * float((p - self.target(s)).abs().mean()) for p, s in zip(predictions, samples)]
        self.values.extend(batch)
        return batch

    def compute(self):
        return {"mae": sum(self.values) / len(self.values)}


class Flaky(Method):
    """Returns the input; raises after `crash_after` samples when that option is positive.

    ``DEMO_FAIL_LOAD=1`` makes `load` raise (to prove stored predictions are used without the model);
    ``DEMO_LOADS`` names a file that gets one line per `load` call.
    """

    name = "flaky"
    tasks = frozenset({"deraining", "unpaired-translation"})
    options = (
        Option("crash_after", 0, "crash after this many samples (0: never)"),
        Option("nan_at", "", "return NaN for the sample with this id"),
    )

    def load(self, checkpoint, device):
        if os.environ.get("DEMO_FAIL_LOAD"):
            raise RuntimeError("load called although stored predictions exist")
        if os.environ.get("DEMO_LOADS"):
            with open(os.environ["DEMO_LOADS"], "a") as handle:
                handle.write(f"{self.name}\n")
        self.seen, self.batches = 0, []

    def predict(self, samples):
        self.seen += len(samples)
        self.batches.append(len(samples))
        if self.config["crash_after"] and self.seen > self.config["crash_after"]:
            raise RuntimeError("flaky method crashed on purpose")
        out = [(s["rainy"] if "rainy" in s else s["image"]).clone() for s in samples]
        for sample, image in zip(samples, out):
            if sample["id"] == self.config["nan_at"]:
                image[0, 0, 0] = float("nan")
        return out


class Noisy(Flaky):
    """Adds unseeded noise: declared non-deterministic, so its predictions are never reused."""

    name = "noisy"
    deterministic = False

    def predict(self, samples):
        return [p + 0.01 * torch.rand(p.shape) for p in super().predict(samples)]


@hookimpl
def harness_register_datasets(register):
    register(DemoPairs)
    register(DemoUnpaired)


@hookimpl
def harness_register_metrics(register):
    register(DemoMae)
    register(DemoMean)


@hookimpl
def harness_register_methods(register):
    register(Flaky)
    register(Noisy)


class TinyNet(Method):
    """A 1×1 convolution trained to map rainy to clean; DEMO_INTERRUPT_AT=N interrupts training at step N."""

    name = "tiny-net"
    tasks = frozenset({"deraining"})
    needs_checkpoint = True
    batch_size = 4
    options = (
        Option("milestones", (3, 5), "steps at which the learning rate halves"),
        Option("bias", True, "give the convolution a bias (shapes the model)"),
    )
    model_options = ("bias",)

    def build(self):
        return torch.nn.Conv2d(3, 3, 1, bias=self.config["bias"])

    def load(self, checkpoint, device):
        from harness.checkpoints import load_into

        self._model = self.build()
        if checkpoint is not None:
            load_into(self._model, checkpoint)

    def predict(self, samples):
        with torch.no_grad():
            return [self._model(s["rainy"][None])[0] for s in samples]

    def training_recipe(self, dataset, context):
        import os

        from harness import SingleModelRecipe

        batch_size, seed = context.batch_size, context.seed
        model = self.build()
        pairs = list(dataset.samples("train"))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(self.config["milestones"]), gamma=0.5)
        interrupt_at = int(os.environ.get("DEMO_INTERRUPT_AT", "0"))

        def batch(step):
            if interrupt_at and step == interrupt_at:
                raise KeyboardInterrupt
            generator = torch.Generator().manual_seed(seed * 100_003 + step)
            chosen = torch.randint(len(pairs), (batch_size,), generator=generator).tolist()
            return (torch.stack([pairs[i]["rainy"] for i in chosen]), torch.stack([pairs[i]["clean"] for i in chosen]))

        def loss(pair):
            rainy, clean = pair
            return torch.nn.functional.mse_loss(model(rainy), clean)

        return SingleModelRecipe(model, optimizer, scheduler, batch, loss, {"optimizer": "sgd", "lr": 0.1}, context)


@hookimpl(specname="harness_register_methods")
def register_tiny_net(register):
    register(TinyNet)
