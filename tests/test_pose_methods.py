"""copy-source, PG² and Def-GAN: architectures at the papers' resolutions, losses, and the CLI round trip
(train → run with the checkpoint) on the bundled pose-synth, as a user would."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from harness import count_parameters
from harness_plugins.datasets.pose_synth import PoseSynth
from harness_plugins.methods.pose_transfer.def_gan import DefGANDiscriminator, DefGANGenerator, nn_loss
from harness_plugins.methods.pose_transfer.pg2 import G1, G2, PG2, DCGANDiscriminator, PG2Generator
from harness_plugins.methods.pose_transfer.pose_transfer_common import SampleNorm

DATA = ("--dataset", "pose-synth")
QUICKSTART = {
    # (`harness train` flags, `harness run` flags): about a minute on a 2-core CPU, beats copy-source on mask-SSIM.
    "def-gan": (("--steps", "40", "--batch-size", "4", "--option", "width=8", "--option", "nn_features=pixels",
                 "--option", "lambda_nn=100", "--option", "lr=0.001"), ("--option", "width=8")),
    "pg2": (("--steps", "100", "--batch-size", "4", "--option", "width=8", "--option", "d_width=8", "--option", "lr=0.002",
             "--option", "stage1_steps=90"), ("--option", "width=8")),
}
MARGIN = {"def-gan": 0.02, "pg2": 0.003}  # measured: def-gan 0.822, pg2 0.789, copy-source 0.783


@pytest.fixture(scope="module")
def synth_home(tmp_path_factory) -> Path:
    """A data home with pose-synth generated once for the module (generation dominates a short run)."""
    home = tmp_path_factory.mktemp("pose-data")
    PoseSynth(home / "pose-synth").verify("test")
    return home


@pytest.fixture(autouse=True)
def shared_pose_synth(isolated_env, synth_home, monkeypatch) -> None:
    monkeypatch.setenv("HARNESS_DATA", str(synth_home))


def conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def test_def_gan_parameter_counts_at_the_papers_resolutions() -> None:
    # Market 128x64: encoders 64,128,256,512,512,512; 2-parameter norms on all but the first and last level.
    widths = (64, 128, 256, 512, 512, 512)
    downs = sum(conv(a, b, 4, bias=False) for a, b in itertools.pairwise(widths)) + 2 * 4
    encoders = conv(21, 64, 3) + conv(18, 64, 3) + 2 * downs
    skips = [2 * w for w in reversed(widths)]  # 1024, 1024, 1024, 512, 256, 128
    decoder, channels = 0, skips[0]
    for index, out in enumerate((512, 512, 512, 256, 128)):
        decoder += conv(channels, out, 4, bias=False) + 2
        channels = out + skips[index + 1]
    decoder += conv(channels, 3, 3)
    assert encoders + decoder == 61_109_085
    assert count_parameters(DefGANGenerator((128, 64), 64)).params == 61_109_085
    # DeepFashion 256x256: one more 512 level in each encoder and in the decoder.
    assert count_parameters(DefGANGenerator((256, 256), 64)).params == 82_080_611
    disc = conv(42, 64, 4) + conv(64, 128, 4, False) + conv(128, 256, 4, False) + conv(256, 512, 4, False) + 3 * 2 + conv(512, 1, 4, False)
    assert count_parameters(DefGANDiscriminator(64)).params == disc == 2_803_782
    assert DefGANDiscriminator(64)(*(torch.zeros(1, c, 128, 64) for c in (3, 18, 3, 18))).shape == (1, 3)  # 3x1 patches


def test_pg2_parameter_counts_at_market_resolution() -> None:
    n, repeats = 128, 5
    g1 = conv(21, n, 3) + sum(2 * conv(n * (i + 1), n * (i + 1), 3) for i in range(repeats))
    g1 += sum(conv(n * (i + 1), n * (i + 2), 3) for i in range(repeats - 1))
    g1 += (8 * 4 * n * repeats + 1) * 64 + (64 + 1) * 8 * 4 * n  # FC to z = 64 and back to 8x4xn
    channels = n
    for i in range(repeats):
        channels += n * (repeats - i)
        g1 += 2 * conv(channels, channels, 3)
        if i < repeats - 1:
            g1 += conv(channels, n * (repeats - i - 1), 1)
            channels = n * (repeats - i - 1)
    g1 += conv(channels, 3, 3)
    assert count_parameters(G1((128, 64), n)).params == g1 == 70_795_075
    g2 = conv(6, n, 3) + conv(n, n, 3) + conv(n, n, 3) + conv(n, 2 * n, 3) + conv(2 * n, 2 * n, 3) + conv(2 * n, 3 * n, 3) \
        + conv(3 * n, 3 * n, 3) + conv(n, n, 3, True) + conv(2 * n, 2 * n, 3)  # stem, 3 levels, 2 stride-2 convs
    g2 += conv(6 * n, n, 3) + conv(n, n, 3) + conv(3 * n, n, 3) + conv(n, n, 3) + 2 * conv(n, n, 3) + conv(n, 3, 3)
    assert count_parameters(G2((128, 64), n)).params == g2 == 6_058_883
    d = conv(6, 64, 5) + conv(64, 128, 5) + conv(128, 256, 5) + conv(256, 512, 5) + 2 * (128 + 256 + 512) + 512 * 8 * 4 + 1
    assert count_parameters(DCGANDiscriminator((128, 64))).params == d == 4_329_537


def test_pg2_deepfashion_variant_is_models256() -> None:
    """At 256×256 the official code builds G2 with UAE_noFC_AfterNoise (a skip at every level, the finest
    included) and DCGANDiscriminator_256 (a fifth 512 conv with batch norm, 8×8 into the linear layer)."""
    n = 128
    enc = conv(6, n, 3) + sum(conv(a, b, 3) + conv(b, b, 3) for a, b in ((n, n), (n, 2 * n), (2 * n, 3 * n), (3 * n, 4 * n)))
    enc += conv(n, n, 3) + conv(2 * n, 2 * n, 3) + conv(3 * n, 3 * n, 3)  # stride-2 convs keep the width
    dec = sum(conv(c, n, 3) + conv(n, n, 3) for c in (8 * n, 4 * n, 3 * n, 2 * n)) + conv(n, 3, 3)
    assert count_parameters(G2((256, 256), n, all_skips=True)).params == enc + dec == 12_696_067
    assert count_parameters(G2((256, 256), n)).params == 12_548_611  # Market's G2 at 256: no finest skip
    d = conv(6, 64, 5) + conv(64, 128, 5) + conv(128, 256, 5) + conv(256, 512, 5) + conv(512, 512, 5)
    d += 2 * (128 + 256 + 512 + 512) + 512 * 8 * 8 + 1
    deep = DCGANDiscriminator((256, 256), deep=True)
    assert count_parameters(deep).params == d == 10_901_057
    assert deep(torch.zeros(2, 3, 256, 256), torch.zeros(2, 3, 256, 256)).shape == (2, 1)
    method = PG2(size="256x256", width=4)
    assert method.variant == "deepfashion" and PG2(width=4).variant == "market"
    assert PG2(size="256x256", width=4, variant="market").variant == "market"
    generator = method.build()
    assert isinstance(generator, PG2Generator) and generator.g2.all_skips
    assert generator(torch.zeros(1, 3, 256, 256), torch.zeros(1, 18, 256, 256)).shape == (1, 3, 256, 256)


def test_pg2_trains_with_its_own_pose_mask() -> None:
    """M_B of PG²'s losses is the official ``pose_mask_r4`` (`pg2_body_mask`), not Def-GAN's rectangles."""
    from harness_plugins.methods.pose_transfer.pg2 import body_masks
    from harness_plugins.shared.pose_maps import pg2_body_mask
    from harness_plugins.shared.body_mask import body_mask

    pose = torch.tensor([[14, 33], [26, 32], [26, 22], [44, 20], [60, 19], [26, 42], [44, 44], [60, 45], [64, 25],
                         [88, 25], [112, 25], [64, 39], [88, 39], [112, 40], [12, 30], [12, 36], [14, 27], [-1, -1]]).float()
    masks = body_masks(pose[None], (128, 64))
    assert torch.equal(masks[0, 0].bool(), pg2_body_mask(pose, (128, 64)))
    assert not torch.equal(masks[0, 0].bool(), body_mask(pose, (128, 64)))


def test_nearest_neighbour_loss_against_brute_force() -> None:
    torch.manual_seed(0)
    reference, generated = torch.randn(2, 4, 6, 5), torch.randn(2, 4, 6, 5)
    expected = torch.zeros(2, 6, 5)
    for y in range(6):
        for x in range(5):
            best = torch.full((2,), float("inf"))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    if 0 <= y + dy < 6 and 0 <= x + dx < 5:
                        best = torch.minimum(best, (reference[:, :, y + dy, x + dx] - generated[:, :, y, x]).abs().sum(1))
            expected[:, y, x] = best
    torch.testing.assert_close(nn_loss(reference, generated, 3), expected.mean())
    shifted = torch.roll(reference, 1, dims=-1)  # a one-pixel shift costs nothing inside the image
    assert nn_loss(reference, shifted, 3) < nn_loss(reference, shifted, 1)


def test_whole_norm_normalises_each_sample_over_all_channels() -> None:
    x = torch.randn(3, 5, 4, 4) * 3 + 2
    y = SampleNorm(1e-3)(x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    var = x.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
    torch.testing.assert_close(y, (x - mean) / torch.sqrt(var + 1e-3))


def run_json(cli, *args: str) -> dict:
    code, out, err = cli("run", *DATA, "--metric", "mask-ssim,ssim", "--json", *args)
    assert code == 0, err
    return json.loads(out)


def score(record: dict, name: str) -> float:
    return record["metrics"][name]["values"][name]


def test_copy_source_returns_the_source(cli) -> None:
    from harness_plugins.methods.pose_transfer.copy_source import CopySource

    sample = {"id": "a", "source": torch.rand(3, 8, 4), "source_pose": torch.zeros(18, 2), "target_pose": torch.zeros(18, 2)}
    assert CopySource().predict([sample])[0] is sample["source"]
    record = run_json(cli, "--method", "copy-source", "--limit", "3")
    assert record["samples"] == 3 and 0 < score(record, "mask-ssim") < 1


@pytest.mark.parametrize("method, options", [
    ("def-gan", ("width=4", "nn_features=pixels")),
    ("pg2", ("width=4", "d_width=4", "stage1_steps=1")),
])
def test_train_then_run_round_trip(cli, tmp_path, method, options) -> None:
    out = tmp_path / method
    flags = [part for option in options for part in ("--option", option)]
    code, _, err = cli("train", "--method", method, *DATA, "--steps", "2", "--batch-size", "2", *flags, "--out", out)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe"]["train_pairs"] > 100
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    if method == "pg2":  # step 0 trains G1 alone, step 1 G2 against D
        assert manifest["recipe"]["stages"] == {"g1": 1, "g2+d": 1}
        assert set(log[0]["losses"]) == {"g1_pose_mask_l1"} and {"d", "g2_adversarial", "g2_l1"} <= set(log[-1]["losses"])
    else:
        assert {"d", "g_adversarial", "nn"} <= set(log[-1]["losses"])
    record = run_json(cli, "--method", method, "--checkpoint", out, *flags, "--limit", "3")
    assert record["samples"] == 3 and 0 <= score(record, "mask-ssim") <= 1
    # A checkpoint trained at one width is refused at another (model_options).
    code, _, err = cli("run", "--method", method, *DATA, "--checkpoint", out, "--option", "width=8", "--metric", "ssim",
                       "--limit", "1")
    assert code == 2 and "width" in err


def test_def_gan_nn_loss_on_vgg19_conv1_2(cli, tmp_path, isolated_env) -> None:
    import torchvision

    wrapper = torch.nn.Module()
    wrapper.features = torchvision.models.vgg19(weights=None).features[:4]
    (isolated_env / "torch" / "hub" / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(wrapper.state_dict(), isolated_env / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")
    out = tmp_path / "vgg"
    code, _, err = cli("train", "--method", "def-gan", *DATA, "--steps", "1", "--batch-size", "1", "--option", "width=4",
                       "--out", out)
    assert code == 0, err
    assert "VGG-19 conv1_2" in json.loads((out / "manifest.json").read_text())["recipe"]["loss"]


def test_bad_size_option_is_a_usage_error(cli) -> None:
    code, _, err = cli("train", "--method", "def-gan", *DATA, "--steps", "1", "--option", "size=128by64")
    assert code == 2 and "HEIGHTxWIDTH" in err
    code, _, err = cli("train", "--method", "def-gan", *DATA, "--steps", "1", "--option", "size=100x64")
    assert code == 2 and "divisible by 32" in err


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(QUICKSTART))
def test_quickstart_training_beats_copy_source_on_mask_ssim(cli, tmp_path, method) -> None:
    out = tmp_path / method
    train, run = QUICKSTART[method]
    code, _, err = cli("train", "--method", method, *DATA, *train, "--out", out)
    assert code == 0, err
    trained = score(run_json(cli, "--method", method, "--checkpoint", out, *run), "mask-ssim")
    floor = score(run_json(cli, "--method", "copy-source"), "mask-ssim")
    assert trained > floor + MARGIN[method], (trained, floor)
