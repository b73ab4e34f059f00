"""An unpackaged third-party plugin, loaded with --plugins-dir, that exercises the core end to end.

It adds a tiny in-memory deraining dataset (images from a seeded generator), a metric and a method
that can be told to crash after some samples, so core behaviour can be tested without any built-in.
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness import DataError, Dataset, Method, Metric, Option, hookimpl


class DemoPairs(Dataset):
    """Six seeded 8×8 pairs; the root must exist and contain READY."""

    name = "demo-pairs"
    task = "deraining"
    splits = ("train", "test")
    default_metrics = {"demo-mae": {}}
    source = "made up by the test suite"
    layout = "ROOT/READY"

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
        generator = torch.Generator().manual_seed(0 if row["split"] == "test" else 1)
        for _ in range(row["position"] + 1):
            clean = torch.rand(3, 8, 8, generator=generator)
            rain = torch.rand(3, 8, 8, generator=generator) * 0.5
        return {"id": row["id"], "rainy": (clean + rain).clamp(0, 1), "clean": clean}


class DemoMae(Metric):
    """Mean absolute error against the clean image."""

    name = "demo-mae"
    higher_is_better = False

    def reset(self) -> None:
        self.values: list[float] = []

    def update(self, predictions, samples):
        batch = [float((p - s["clean"]).abs().mean()) for p, s in zip(predictions, samples)]
        self.values.extend(batch)
        return batch

    def compute(self):
        return {"mae": sum(self.values) / len(self.values)}


class Flaky(Method):
    """Returns the input; raises after `crash_after` samples when that option is positive."""

    name = "flaky"
    tasks = frozenset({"deraining"})
    options = (Option("crash_after", 0, "crash after this many samples (0: never)"),)

    def load(self, checkpoint, device):
        self.seen = 0

    def predict(self, samples):
        self.seen += len(samples)
        if self.config["crash_after"] and self.seen > self.config["crash_after"]:
            raise RuntimeError("flaky method crashed on purpose")
        return [s["rainy"] for s in samples]


@hookimpl
def harness_register_datasets(register):
    register(DemoPairs)


@hookimpl
def harness_register_metrics(register):
    register(DemoMae)


@hookimpl
def harness_register_methods(register):
    register(Flaky)


class TinyNet(Method):
    """A 1×1 convolution trained to map rainy to clean; DEMO_INTERRUPT_AT=N interrupts training at step N."""

    name = "tiny-net"
    tasks = frozenset({"deraining"})
    needs_checkpoint = True
    options = (Option("milestones", (3, 5), "steps at which the learning rate halves"),)

    def build(self):
        return torch.nn.Conv2d(3, 3, 1)

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
