"""UNIT: parameter counts from the layer shapes, the official loss combination, the official gen_*.pt layout,
and training then scoring through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from harness_plugins.methods.translation.unit import UNIT, discriminator_terms, generator_terms, weighted_total
from harness_plugins.methods.translation.unit_networks import (
    DiscriminatorPair,
    GeneratorPair,
    MultiScaleDiscriminator,
    VAEGenerator,
)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout  # every official conv has a bias


def test_parameter_counts_summed_from_the_layer_shapes():
    res_blocks = 4 * 2 * conv(256, 256, 3)  # 4 blocks of two 3×3 convs; instance norm has no parameters
    encoder = conv(3, 64, 7) + conv(64, 128, 4) + conv(128, 256, 4) + res_blocks
    layer_norms = 2 * 128 + 2 * 64  # gamma and beta per channel
    decoder = res_blocks + conv(256, 128, 5) + conv(128, 64, 5) + layer_norms + conv(64, 3, 7)
    assert (encoder, decoder) == (5_385_856, 5_754_627)
    generator = VAEGenerator()
    assert count(generator.enc) == encoder and count(generator.dec) == decoder
    assert count(generator) == 11_140_483
    scale = conv(3, 64, 4) + conv(64, 128, 4) + conv(128, 256, 4) + conv(256, 512, 4) + conv(512, 1, 1)
    assert scale == 2_757_057
    assert count(MultiScaleDiscriminator()) == 3 * scale == 8_271_171
    assert count(UNIT().build()) == 2 * 11_140_483


def tiny_pair(seed: int = 0) -> tuple[GeneratorPair, DiscriminatorPair]:
    torch.manual_seed(seed)
    return GeneratorPair(dim=4, blocks=1), DiscriminatorPair(dim=4)


def test_forward_backward_shapes():
    gen, dis = tiny_pair()
    x = torch.rand(2, 3, 64, 48) * 2 - 1
    h = gen.a.encode(x)
    assert h.shape == (2, 16, 16, 12)  # dim·2² channels at a quarter of the size
    y = gen.b.decode(h)
    assert y.shape == x.shape and y.abs().max() <= 1
    x_a, x_b = torch.rand(2, 2, 3, 64, 64) * 2 - 1
    assert [tuple(o.shape) for o in dis.a(x_a)] == [(2, 1, 4, 4), (2, 1, 2, 2), (2, 1, 1, 1)]  # 3 scales
    terms = generator_terms(gen, dis, x_a, x_b)
    weighted_total(terms, UNIT().config).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in gen.parameters())


def test_losses_combine_with_the_official_config_weights():
    gen, dis = tiny_pair(1)
    x_a, x_b = torch.rand(2, 1, 3, 64, 64) * 2 - 1
    cfg = UNIT().config
    assert {k: cfg[k] for k in ("gan_w", "recon_x_w", "recon_kl_w", "recon_x_cyc_w", "recon_kl_cyc_w")} == {
        "gan_w": 1.0, "recon_x_w": 10.0, "recon_kl_w": 0.01, "recon_x_cyc_w": 10.0, "recon_kl_cyc_w": 0.01}
    torch.manual_seed(7)
    terms = generator_terms(gen, dis, x_a, x_b)
    total = weighted_total(terms, cfg)
    # By hand, drawing the noise in the official order (encode x_a, x_b, then x_ba, x_ab).
    torch.manual_seed(7)
    h_a = gen.a.enc(x_a)
    n_a = torch.randn_like(h_a)
    h_b = gen.b.enc(x_b)
    n_b = torch.randn_like(h_b)
    x_ba, x_ab = gen.a.dec(h_b + n_b), gen.b.dec(h_a + n_a)
    h_b2 = gen.a.enc(x_ba)
    n_b2 = torch.randn_like(h_b2)
    h_a2 = gen.b.enc(x_ab)
    n_a2 = torch.randn_like(h_a2)
    adv = sum(((o - 1) ** 2).mean() for o in dis.a(x_ba)) + sum(((o - 1) ** 2).mean() for o in dis.b(x_ab))
    recon = (gen.a.dec(h_a + n_a) - x_a).abs().mean() + (gen.b.dec(h_b + n_b) - x_b).abs().mean()
    kl = (h_a**2).mean() + (h_b**2).mean()
    cyc = (gen.a.dec(h_a2 + n_a2) - x_a).abs().mean() + (gen.b.dec(h_b2 + n_b2) - x_b).abs().mean()
    kl_cyc = (h_a2**2).mean() + (h_b2**2).mean()
    expected = 1 * adv + 10 * recon + 0.01 * kl + 10 * cyc + 0.01 * kl_cyc
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(terms["cyc_kl_a"], (h_a2**2).mean())
    # Discriminator: fresh translations, real → 1 and fake → 0 on every scale.
    torch.manual_seed(3)
    d_terms = discriminator_terms(gen, dis, x_a, x_b)
    torch.manual_seed(3)
    h_a = gen.a.enc(x_a)
    z_a = h_a + torch.randn_like(h_a)
    h_b = gen.b.enc(x_b)
    z_b = h_b + torch.randn_like(h_b)
    fake_a = gen.a.dec(z_b).detach()
    fake_b = gen.b.dec(z_a).detach()
    expected_a = sum((f**2).mean() + ((r - 1) ** 2).mean() for f, r in zip(dis.a(fake_a), dis.a(x_a)))
    expected_b = sum((f**2).mean() + ((r - 1) ** 2).mean() for f, r in zip(dis.b(fake_b), dis.b(x_b)))
    torch.testing.assert_close(d_terms["dis_a"], expected_a)
    torch.testing.assert_close(d_terms["dis_b"], expected_b)


OFFICIAL_KEYS = (
    "enc.model.0.conv.weight",  # c7s1-64
    "enc.model.3.model.0.model.1.conv.bias",  # ResBlocks → ResBlock → second Conv2dBlock
    "dec.model.0.model.3.model.0.conv.weight",
    "dec.model.2.norm.gamma",  # the decoder's layer norm after the first upsampling
    "dec.model.5.conv.weight",  # c7s1-3 + tanh (1 and 3 are the upsamplings)
)


def official_gen_file(path, seed: int = 0, dim: int = 64) -> GeneratorPair:
    """A gen_*.pt as the official trainer saves it ({"a": state, "b": state}), with the InstanceNorm running
    statistics that files written by PyTorch 0.3 carry (the official converter drops them)."""
    torch.manual_seed(seed)
    pair = GeneratorPair(dim=dim, blocks=4)
    for network in pair.modules():  # non-trivial biases and norms, so that a misplaced tensor shows
        if isinstance(network, torch.nn.Conv2d):
            torch.nn.init.normal_(network.bias, 0.0, 0.1)
    flat = pair.state_dict()
    official = {d: {k.removeprefix(f"{d}."): v for k, v in flat.items() if k.startswith(f"{d}.")} for d in "ab"}
    assert all(key in official["a"] for key in OFFICIAL_KEYS)
    official["a"]["enc.model.3.model.0.model.0.norm.running_mean"] = torch.zeros(dim * 4)
    official["b"]["dec.model.0.model.1.model.1.norm.running_var"] = torch.ones(dim * 4)
    torch.save(official, path)
    return pair


def test_official_gen_file_gives_identical_outputs(tmp_path):
    weights = tmp_path / "gen_01000000.pt"
    pair = official_gen_file(weights, dim=8)
    image = torch.rand(3, 40, 52)
    x = image[None] * 2 - 1
    for a2b, (source, target) in ((True, (pair.a, pair.b)), (False, (pair.b, pair.a))):
        method = UNIT(dim=8, resize=0, a2b=a2b)
        method.load(weights, "cpu")
        out = method.predict([{"id": "x", "image": image}])[0]
        with torch.no_grad():
            expected = ((target.dec(source.enc(x)) + 1) / 2).clamp(0, 1)[0]
        torch.testing.assert_close(out, expected, atol=0, rtol=0)


def test_test_time_resize_of_the_shorter_side(tmp_path):
    weights = tmp_path / "gen.pt"
    official_gen_file(weights, dim=8)
    image = torch.rand(3, 30, 45)
    method = UNIT(dim=8, resize=20, output_size="model")
    method.load(weights, "cpu")
    assert method.predict([{"id": "x", "image": image}])[0].shape == (3, 20, 30)  # torchvision Resize(20)
    array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    small = np.asarray(Image.fromarray(array).resize((30, 20), Image.BILINEAR))
    x = torch.from_numpy(small.copy()).permute(2, 0, 1).float()[None] / 127.5 - 1
    with torch.no_grad():  # width 30 is reflection-padded to 32 (two stride-2 stages), then cropped back
        expected = ((method.model(F.pad(x, (0, 2, 0, 0), mode="reflect")) + 1) / 2).clamp(0, 1)[..., :30]
    back = F.interpolate(expected, size=(30, 45), mode="bicubic", antialias=True).clamp(0, 1)[0]
    method = UNIT(dim=8, resize=20)
    method.load(weights, "cpu")
    torch.testing.assert_close(method.predict([{"id": "x", "image": image}])[0], back, atol=1e-5, rtol=0)


def test_other_files_are_a_clear_error(cli, tmp_path):
    torch.save({"a": DiscriminatorPair(dim=8).a.state_dict(), "b": DiscriminatorPair(dim=8).b.state_dict()}, tmp_path / "dis.pt")
    torch.save(VAEGenerator(dim=8).state_dict(), tmp_path / "one.pt")
    for name, message in (("dis.pt", "does not fit the UNIT generators"), ("one.pt", "expected the official gen_")):
        code, _, err = cli("run", "--method", "unit", "--dataset", "translate-synth", "--checkpoint", tmp_path / name,
                           "--option", "dim=8", "--metric", "params")
        assert code == 2 and message in err, err


TINY = ["--option", "dim=4", "--option", "n_res=1"]


def test_unit_trains_on_translate_synth_then_runs_and_scores(cli, tmp_path):
    out = tmp_path / "unit"
    code, _, err = cli("train", "--method", "unit", "--dataset", "translate-synth", "--steps", "3", "--batch-size", "1",
                       *TINY, "--option", "dis_dim=4", "--option", "crop_size=64", "--option", "step_size=2",
                       "--option", "lr=1e-3", "--out", out)
    assert code == 0, err
    state = torch.load(out / "state.pt", weights_only=True)["recipe"]
    assert set(state["networks"]) == {"gen", "dis"} and set(state["optimizers"]) == {"gen", "dis"}
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines() if '"losses"' in line]
    assert {"adv_a", "recon_x_b", "recon_kl_a", "cyc_x_a", "cyc_kl_b", "dis_a", "gen_total"} <= set(log[-1]["losses"])
    # lr_policy step: × gamma 0.5 after every step_size (2) steps (the log shows the rate the next step uses)
    assert [entry["lr"]["gen"] for entry in log] == pytest.approx([1e-3, 5e-4, 5e-4])
    manifest = json.loads((out / "manifest.json").read_text())
    assert "weight decay 0.0001" in manifest["recipe"]["optimizer"]
    code, out_json, err = cli("run", "--method", "unit", "--dataset", "translate-synth", "--checkpoint", out, *TINY,
                              "--option", "resize=0", "--metric", "pixel-accuracy,params", "--json")
    assert code == 0, err
    record = json.loads(out_json)
    assert record["samples"] == 12 and record["status"] == "ok"
    assert 0 <= record["metrics"]["pixel-accuracy"]["values"]["pixel-accuracy"] <= 100
    assert record["metrics"]["params"]["values"]["params"] == count(VAEGenerator(dim=4, blocks=1))  # encoder a + decoder b


def test_crop_check_agrees_with_the_discriminator():
    from harness import UsageError
    from harness_plugins.methods.translation.unit import check_crop

    for crop in (16, 32, 48, 56, 64, 96):
        try:
            MultiScaleDiscriminator(dim=2)(torch.zeros(1, 3, crop, crop))
            fits = True
        except RuntimeError:
            fits = False
        if fits:
            check_crop(crop, 2, 4, 3)
        else:
            with pytest.raises(UsageError, match="lower num_scales or dis_layers"):
                check_crop(crop, 2, 4, 3)
    with pytest.raises(UsageError, match="multiple of 2\\^n_downsample = 4"):
        check_crop(66, 2, 4, 3)


def test_training_resizes_the_shorter_side_before_the_crop_as_the_official_loader():
    from harness_plugins.methods.translation.cyclegan import augmented
    from harness_plugins.methods.translation.unit import resize_shorter_side

    assert UNIT().config["load_size"] == 256  # official new_size
    image = torch.rand(3, 30, 45)

    class OneImage:
        def load(self, row):
            return {"image": image}

    batch = augmented(OneImage(), [{}], 20, 20, True, 0, 0, 0, resize_shorter_side)
    resized = resize_shorter_side(image, 20) * 2 - 1  # 20 × 30, PIL bilinear
    windows = [resized[..., i : i + 20] for i in range(11)]
    assert any(torch.equal(batch[0], w) or torch.equal(batch[0], w.flip(-1)) for w in windows)


def test_non_square_training_images_reach_the_official_crop(cli, tmp_path):
    # 40 × 48 images: the shorter side goes to 256 (bilinear), so the default 256 crop fits.
    rng = np.random.default_rng(0)
    for folder in ("trainA", "trainB", "testA", "testB"):
        (tmp_path / "a2b" / folder).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "a2b" / folder / f"{i}.png")
    out = tmp_path / "unit"
    code, _, err = cli("train", "--method", "unit", "--dataset", "cyclegan-folder", "--data-root", tmp_path / "a2b",
                       "--steps", "1", "--batch-size", "1", *TINY, "--option", "dis_dim=4", "--option", "num_scales=1",
                       "--out", out)
    assert code == 0, err
    recipe = json.loads((out / "manifest.json").read_text())["recipe"]
    assert recipe["data"].startswith("shorter side to 256 (PIL bilinear), random crop 256")


def test_normalize_is_the_official_per_image_min_max_stretch(tmp_path):
    weights = tmp_path / "gen.pt"
    official_gen_file(weights, dim=8)
    image = torch.rand(3, 24, 28)
    outputs = {}
    for normalize in (False, True):
        method = UNIT(dim=8, resize=0, normalize=normalize)
        method.load(weights, "cpu")
        outputs[normalize] = method.predict([{"id": "x", "image": image}])[0]
    plain = outputs[False]
    torch.testing.assert_close(outputs[True], (plain - plain.min()) / (plain.max() - plain.min()))
    assert outputs[True].min() == 0 and outputs[True].max() == 1
