"""A tiny adversarial method for the training-engine tests: generator + discriminator, two Adam
optimizers, a scheduler on D, an image pool drawing from Python's `random`, label noise from NumPy's
global generator, input noise from torch's, and an optional EMA of the generator.

DEMO_STEP_SLEEP=SECONDS slows every step so a test can kill the process half-way;
DEMO_INTERRUPT_AT=N raises KeyboardInterrupt at the start of step N; DEMO_SIGTERM_AT=N sends the
process SIGTERM in the middle of step N.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import torch
import torch.nn.functional as F

from harness import EMA, ImagePool, Method, Option, TrainingRecipe, hookimpl
from harness.train.samplers import uniform_batch


def generator() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1))


def discriminator() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(4, 1, 3))


class TinyGANRecipe(TrainingRecipe):
    def __init__(self, pairs, context, ema: float) -> None:
        super().__init__({"generator": "adam 2e-3", "discriminator": "adam 1e-3, step decay"}, exported="generator")
        self.context, self.pairs = context, pairs
        self.g, self.d = generator().to(context.device), discriminator().to(context.device)
        self.networks.update(generator=self.g, discriminator=self.d)
        self.optimizers.update(
            generator=torch.optim.Adam(self.g.parameters(), lr=2e-3, betas=(0.5, 0.999)),
            discriminator=torch.optim.Adam(self.d.parameters(), lr=1e-3, betas=(0.5, 0.999)),
        )
        self.schedulers["discriminator"] = torch.optim.lr_scheduler.StepLR(self.optimizers["discriminator"], 7, 0.5)
        self.pool = ImagePool(3)
        self.stateful["pool"] = self.pool
        if ema:
            self.stateful["generator_ema"] = EMA(self.g, ema)
            self.exported = "generator_ema"
        self.batches = context.loader(self.batch)
        self.sleep = float(os.environ.get("DEMO_STEP_SLEEP", "0"))
        self.interrupt_at = int(os.environ.get("DEMO_INTERRUPT_AT", "0"))
        self.terminate_at = int(os.environ.get("DEMO_SIGTERM_AT", "0"))

    def batch(self, step):
        rows = uniform_batch(len(self.pairs), self.context.batch_size, self.context.seed, step)
        return (torch.stack([self.pairs[i]["rainy"] for i in rows]), torch.stack([self.pairs[i]["clean"] for i in rows]))

    def train_step(self, step):
        if self.interrupt_at and step == self.interrupt_at:
            raise KeyboardInterrupt
        ctx, g_opt, d_opt = self.context, self.optimizers["generator"], self.optimizers["discriminator"]
        rainy, clean = (x.to(ctx.device) for x in ctx.shard(self.batches(step)))
        noise = torch.randn(rainy.shape[0], 1, *rainy.shape[2:], device=ctx.device)
        with ctx.autocast():
            fake = self.g(torch.cat([rainy, noise], 1))
        real_label = float(np.random.uniform(0.8, 1.0))  # label smoothing from NumPy's global generator

        d_opt.zero_grad(set_to_none=True)
        with ctx.autocast():
            pooled = self.pool.query(fake.detach())
            real, fake_score = self.d(clean), self.d(pooled)
            d_loss = 0.5 * (F.mse_loss(real.float(), torch.full_like(real.float(), real_label))
                            + F.mse_loss(fake_score.float(), torch.zeros_like(fake_score.float())))
        ctx.backward(d_loss)
        ctx.step(d_opt)
        self.schedulers["discriminator"].step()
        if self.terminate_at and step == self.terminate_at:  # a stop request between the D and the G update
            os.kill(os.getpid(), signal.SIGTERM)

        g_opt.zero_grad(set_to_none=True)
        with ctx.autocast():
            score = self.d(fake)
            adversarial = F.mse_loss(score.float(), torch.ones_like(score.float()))
            l1 = F.l1_loss(fake.float(), clean)
            g_loss = adversarial + 10 * l1
        ctx.backward(g_loss)
        ctx.step(g_opt)
        if "generator_ema" in self.stateful:
            self.stateful["generator_ema"].update()
        if self.sleep:
            time.sleep(self.sleep)
        return {"d": d_loss.item(), "g": g_loss.item(), "g_l1": l1.item()}


class TinyGAN(Method):
    """Maps rainy to clean images adversarially (test fixture for the training engine)."""

    name = "tiny-gan"
    tasks = frozenset({"deraining"})
    needs_checkpoint = True
    default_steps = 20
    default_batch_size = 4
    options = (Option("ema", 0.0, "EMA decay of the exported generator (0: export the raw generator)", float),)

    def build(self):
        return generator()

    def load(self, checkpoint, device):
        from harness.checkpoints import load_into

        self._model, self.device = self.build().to(device), device
        if checkpoint is not None:
            load_into(self._model, checkpoint)
        self._model.eval()

    def predict(self, samples):
        with torch.no_grad():
            out = []
            for sample in samples:
                rainy = sample["rainy"][None].to(self.device)
                out.append(self._model(torch.cat([rainy, torch.zeros_like(rainy[:, :1])], 1))[0].clamp(0, 1).cpu())
            return out

    def training_recipe(self, dataset, context):
        return TinyGANRecipe(list(dataset.samples("train")), context, self.config["ema"])


@hookimpl
def harness_register_methods(register):
    register(TinyGAN)
