"""SPT's face discriminator (Eq. 11) and auxiliary background data (Eq. 13) inside the training recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures_spt import TinyPoses
from PIL import Image

from harness import DataError, UsageError
from harness.train.context import TrainContext
from harness_plugins.methods.pose_transfer.background_data import aux_images, load_background
from harness_plugins.methods.pose_transfer.spt import SPT, d_loss, lsgan
from harness_plugins.methods.pose_transfer.spt_networks import foreground_mask


def recipe(steps: int = 3, seed: int = 0, **options) -> object:
    """DeepFashion's preset (face loss on); TinyPoses names none."""
    method = SPT(width=4, ndf=8, candidates=4, vgg="none", **{"preset": "deepfashion", **options})
    return method.training_recipe(TinyPoses(count=6), TrainContext(batch_size=2, steps=steps, seed=seed))


# -- masked LSGAN ----------------------------------------------------------------------------------
def test_masked_lsgan_averages_the_valid_samples_only():
    score = torch.tensor([0.5, 2.0, -1.0]).view(3, 1, 1, 1).expand(3, 1, 2, 2)
    everyone = torch.ones(3, dtype=torch.bool)
    assert float(lsgan(score, True, everyone)) == pytest.approx(float(lsgan(score, True)))
    assert float(lsgan(score, True, torch.tensor([True, False, True]))) == pytest.approx((0.25 + 4.0) / 2)
    assert float(lsgan(score, False, torch.tensor([False, True, False]))) == pytest.approx(4.0)
    assert float(lsgan(score, True, torch.zeros(3, dtype=torch.bool))) == 0.0  # a batch without faces: 0


def test_masked_faces_give_the_discriminator_no_gradient():
    d = torch.nn.Conv2d(3, 1, 1)
    real, fake = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4, requires_grad=True)
    none = torch.zeros(2, dtype=torch.bool)
    loss = d_loss(d, real, [fake], [none, none])
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0.0 for p in d.parameters())


# -- face discriminator in the recipe --------------------------------------------------------------
def test_face_loss_reaches_the_foreground_generator_and_masks_faceless_poses():
    r = recipe()
    batch = r.batch(1)
    assert batch["face_valid_s"].all() and batch["face_valid_t"].all()  # TinyPoses shows nose, eyes and ears
    g = r.networks["generator"]
    losses: dict = {}
    face = r.face_loss(batch, *fakes(r, batch), losses)
    grads = torch.autograd.grad(face, list(g.fg.parameters()), allow_unused=True)
    assert sum(float(x.abs().sum()) for x in grads if x is not None) > 0
    assert losses["_F_fake_t"].shape == (2, 3, 32, 32)
    faceless = {**batch, "face_valid_s": torch.zeros(2, dtype=torch.bool), "face_valid_t": torch.zeros(2, dtype=torch.bool)}
    face = r.face_loss(faceless, *fakes(r, batch), {})
    assert float(face.detach()) == 0.0


def fakes(r, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The two cycle images of `ha_loss`, rendered with gradients into the foreground generator."""
    g = r.networks["generator"]
    source = batch["image"] * 2 - 1
    with torch.no_grad():
        parsing_t = g.parse(batch["parsing"], batch["heat_s"], batch["mask_s"], batch["heat_t"], batch["mask_t"])
    fake_t = g.render(source, batch["parsing"], batch["heat_s"], parsing_t, batch["heat_t"], batch["theta_st"],
                      batch["valid_st"], batch["parts_t"])
    fake_s = g.render(fake_t, parsing_t, batch["heat_t"], batch["parsing"], batch["heat_s"], batch["theta_ts"],
                      batch["valid_ts"], batch["parts_s"])
    return fake_t, fake_s


def test_face_false_builds_no_face_discriminator():
    r = recipe(face=False)
    assert "D_F" not in r.networks and "D_F" not in r.optimizers and "face_s" not in r.batch(1)
    assert r.description["losses"]["face"].startswith("off")


# -- auxiliary backgrounds -------------------------------------------------------------------------
def write_backgrounds(folder, count: int = 5, size: tuple[int, int] = (80, 60)) -> list[np.ndarray]:
    """``count`` random RGB images (H, W) = size, as PNG (lossless: the pixels can be compared)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    arrays = []
    for i in range(count):
        array = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(array).save(folder / f"Places365_val_{i + 1:08d}.png")
        arrays.append(array)
    (folder / "notes.txt").write_text("not an image")
    return arrays


def test_aux_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'missing'}.*does not exist"):
        aux_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=f"{tmp_path / 'empty'}.*no images"):
        recipe(aux_backgrounds=str(tmp_path / "empty"))
    with pytest.raises(UsageError, match="background=false"):
        recipe(aux_backgrounds=str(tmp_path / "empty"), background=False)


def test_backgrounds_are_centre_cropped_to_the_training_aspect_and_resized(tmp_path):
    array = np.zeros((40, 40, 3), np.uint8)
    array[:, 10:30] = 255  # the middle half of the columns is white
    Image.fromarray(array).save(tmp_path / "a.png")
    tall = load_background(tmp_path / "a.png", (64, 32))  # 2:1 crop of a square: the middle 20 columns
    assert tall.shape == (3, 64, 32) and float(tall.min()) == pytest.approx(1.0)
    same = load_background(tmp_path / "a.png", (40, 40))  # no resize: the exact pixels
    torch.testing.assert_close(same, torch.from_numpy(array).permute(2, 0, 1).float() / 255)


def test_aux_batches_are_deterministic_and_the_loss_uses_their_pixels(tmp_path):
    arrays = write_backgrounds(tmp_path / "val_256")
    folder = str(tmp_path / "val_256")
    r = recipe(steps=3, stages=(1, 1, 1), aux_backgrounds=folder)
    assert len(r.aux) == 5 and f"5 auxiliary images from {folder}" in r.description["losses"]["background"]
    batch = r.batch(1)  # stage ha: the background step runs
    assert "aux" not in r.batch(0) and "aux" not in r.batch(2)  # H_S pretraining and E2E: background fixed
    again = recipe(steps=3, stages=(1, 1, 1), aux_backgrounds=folder).batch(1)
    torch.testing.assert_close(again["aux"], batch["aux"])
    # each aux image is one of the files, resized from 80x60 to the training size 64x32 (centre crop 80x40)
    expected = [load_background(path, (64, 32)) for path in r.aux]
    assert all(any(torch.equal(image, e) for e in expected) for image in batch["aux"])
    crops = [torch.from_numpy(a[:, 10:50]).permute(2, 0, 1).float() / 255 for a in arrays]
    resized = [F.interpolate(c[None], size=(64, 32), mode="bilinear", antialias=True, align_corners=False)[0] for c in crops]
    torch.testing.assert_close(expected[0], resized[0].clamp(0, 1))
    # L_rec (Eq. 13) is the MSE over the whole aux image, before the update
    g = r.networks["generator"]
    image, hole = batch["aux"] * 2 - 1, foreground_mask(batch["parsing"])
    with torch.no_grad():
        torch.manual_seed(5)
        want = F.mse_loss(g.background(image, hole), image)
    losses: dict = {}
    torch.manual_seed(5)  # the background U-Net's dropout draws the same masks
    r.background_step(batch, losses)
    assert float(losses["B_rec"].detach()) == pytest.approx(float(want), rel=1e-5)
    # another image under the same holes changes the loss: it is the aux pixels that are reconstructed
    other = {**batch, "aux": 1 - batch["aux"]}
    r2 = recipe(steps=3, stages=(1, 1, 1), aux_backgrounds=folder)
    torch.manual_seed(5)
    r2.background_step(other, losses)
    assert float(losses["B_rec"].detach()) != pytest.approx(float(want), rel=1e-3)


def test_aux_training_runs_every_stage(tmp_path):
    write_backgrounds(tmp_path / "val_256", count=3)
    r = recipe(steps=3, stages=(1, 1, 1), aux_backgrounds=str(tmp_path / "val_256"))
    before = [p.detach().clone() for p in r.networks["D_B"].parameters()]
    logged = [r.train_step(step) for step in range(3)]
    assert {"B_rec", "B_adv", "D_B", "A_face", "D_F"} <= set(logged[1])
    assert all(np.isfinite(list(log.values())).all() for log in logged)
    assert any(not torch.equal(a, b) for a, b in zip(before, r.networks["D_B"].parameters()))
