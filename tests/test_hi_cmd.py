"""Hi-CMD: module parameter counts of the paper notes (§6), official checkpoint keys, CLI runs on the real layouts."""

from __future__ import annotations

import json

import pytest
import torch
from fixtures_vireid import make_regdb, make_sysu

from harness_plugins.methods.reid.hi_cmd import (
    EXCLUDED_INDEX,
    ILLUMINATION_INDEX,
    POSE_INDEX,
    STYLE_INDEX,
    Discriminator,
    HiCMDNet,
    inference_modules,
)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def net() -> HiCMDNet:
    return HiCMDNet(classes=206)


def test_module_parameter_counts_equal_the_paper_notes(net):
    gen = net.gen_RGB
    assert count(gen.enc_pro) == 1_520_448
    assert count(gen.enc_att) - count(gen.enc_att.model.fc) == 23_508_032
    assert count(net.backbone_pro.model.layer2) + count(net.backbone_pro.model.layer3) == 8_317_952
    head = net.id_classifier.classifier
    assert count(head.add_block[0]) == 4_196_352 and count(head.add_block[1]) == 4_096
    assert count(head.add_block2) == 2_098_176
    assert count(head.classifier) == 422_094  # 206 RegDB identities
    assert count(gen.dec) == 12_123_011
    assert sum(count(getattr(gen.dec, f"mlp_{k}{i}")) for k in "wb" for i in range(1, 5)) == 6_303_744
    assert count(Discriminator()) == 1_025_571
    # the inference path of one modality: E^p + E^a + H + fc1/BN
    assert sum(count(m) for m in inference_modules(net)) == 37_546_880
    assert sum(count(m) for m in inference_modules(net, infrared=True)) == 37_546_880
    # everything trained: 2 E^a, 2 E^p, shared G, 2 D, H, fc1/BN, fc2, classifier, α
    used = (2 * (23_508_032 + 1_520_448) + 12_123_011 + 2 * 1_025_571 + 8_317_952 + 4_200_448 + 2_098_176 + 422_094 + 1)
    assert used == 79_269_784
    assert net.decoder is gen.dec and not hasattr(net.gen_IR, "dec") and gen.enc_att is not net.gen_IR.enc_att
    assert count(HiCMDNet(classes=296).id_classifier.classifier.classifier) == 606_504  # SYSU


def test_attribute_code_split_is_interleaved():
    assert len(STYLE_INDEX) == 1024 and len(POSE_INDEX) == 512 and len(ILLUMINATION_INDEX) == 512
    assert STYLE_INDEX[:2].tolist() == [0, 1] and STYLE_INDEX[256].item() == 512
    assert POSE_INDEX[0].item() == 256 and ILLUMINATION_INDEX[0].item() == 384 and ILLUMINATION_INDEX[-1].item() == 2047
    assert sorted(EXCLUDED_INDEX.tolist()) == sorted(POSE_INDEX.tolist() + ILLUMINATION_INDEX.tolist())
    assert EXCLUDED_INDEX.tolist() == sorted(EXCLUDED_INDEX.tolist())


OFFICIAL_KEYS = {
    "gen": [
        "enc_att.model.conv1.weight", "enc_att.model.layer4.2.bn3.running_mean", "enc_att.model.fc.weight",
        "enc_pro.model1.0.conv.weight", "enc_pro.model2.1.conv.bias", "enc_pro.model3.0.model.3.model.1.conv.weight",
        "enc_pro.model3.1.conv1.conv.weight", "enc_pro.model3.1.conv18.1.conv.weight", "enc_pro.model3.1.fuse.conv.weight",
        "dec.model.0.model.3.model.1.norm.running_var", "dec.model.2.norm.gamma", "dec.model.4.norm.beta",
        "dec.model.7.conv.weight", "dec.mlp_w1.model.0.fc.weight", "dec.mlp_b4.model.2.fc.bias",
    ],
    "id": ["classifier.add_block.0.weight", "classifier.add_block.1.running_var", "classifier.add_block2.0.weight",
           "classifier.classifier.0.weight"],
    "backbone_pro": ["model.layer2.0.conv1.weight", "model.layer3.5.bn3.weight", "model.fc.bias"],
    "combine_weight": ["multp"],
}
"""Key names of the official bismex/HiCMD checkpoints (networks.py / reIDmodel.py / trainer.py module names)."""


def _official_checkpoint(net: HiCMDNet, folder, step: str = "00070000") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    state = net.state_dict()

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v.clone() for k, v in state.items() if k.startswith(prefix)}

    gen = {"a": part("gen_RGB."), "b": part("gen_IR.")}
    ident = {"id": part("id_classifier."), "backbone_pro": part("backbone_pro."), "combine_weight": part("combine_weight.")}
    for name, keys in OFFICIAL_KEYS.items():
        holder = gen["a"] if name == "gen" else ident[name]
        missing = [key for key in keys if key not in holder]
        assert not missing, (name, missing)
    torch.save(gen, folder / f"gen_{step}.pt")
    torch.save(ident, folder / f"id_{step}.pt")


SMALL = ("--option", "height=128", "--option", "width=64")
"""Half-size inputs (the smallest the ASPP dilation 9 allows) keep the three ResNet-50s of the CPU test fast; the network is the same."""


def test_official_checkpoint_loads_and_runs_on_regdb_and_sysu(tmp_path, net, cli):
    torch.manual_seed(0)
    with torch.no_grad():
        net.combine_weight.multp.fill_(0.7)
    _official_checkpoint(net, tmp_path / "model" / "RegDB_01")
    regdb = make_regdb(tmp_path / "RegDB", people=6, per_person=2, trials=1)
    code, out, err = cli("run", "--method", "hi-cmd", "--dataset", "regdb", "--data-root", regdb,
                         "--dataset-option", "strict=false", "--checkpoint", tmp_path / "model" / "RegDB_01", *SMALL, "--json", "--quiet")
    assert code == 0, err
    record = json.loads(out)
    assert record["metrics"]["cmc"]["params"]["protocol"] == "regdb" and record["samples"] == 12
    assert 0.0 <= record["metrics"]["map"]["values"]["mAP"] <= 100.0
    assert record["method"]["checkpoint_sha256"]

    sysu = make_sysu(tmp_path / "SYSU-MM01", per_camera=1)
    code, out, err = cli("run", "--method", "hi-cmd", "--dataset", "sysu-mm01", "--data-root", sysu,
                         "--checkpoint", tmp_path / "model" / "RegDB_01" / "gen_00070000.pt", *SMALL, "--json", "--quiet")
    assert code == 0, err
    record = json.loads(out)
    assert record["metrics"]["cmc"]["details"]["gallery_sampler"].startswith("seeded")
    assert record["metrics"]["cmc"]["details"]["protocol"]["mode"] == "all"


def test_features_follow_the_modality_and_the_official_weights(tmp_path, net):
    from harness_plugins.methods.reid.hi_cmd import HiCMD

    _official_checkpoint(net, tmp_path / "ckpt", step="00000005")
    method = HiCMD()
    method.load(tmp_path / "ckpt", "cpu")
    assert method.model.id_classifier.classifier.classifier[0].out_features == 206
    assert torch.equal(method.model.gen_IR.enc_pro.model1[0].conv.weight, net.gen_IR.enc_pro.model1[0].conv.weight)
    image = torch.rand(3, 64, 32)
    visible, infrared = method.predict([{"id": "a", "image": image, "modality": "visible", "camid": 1},
                                        {"id": "b", "image": image, "modality": "infrared", "camid": 3}])
    assert visible.shape == (2048,) and abs(float(visible.norm()) - 1.0) < 1e-5
    assert not torch.allclose(visible, infrared)  # RGB and IR encoders differ
    with pytest.raises(Exception, match="unknown modality"):
        method.predict([{"id": "c", "image": image, "modality": "sonar", "camid": 1}])


def test_untrained_hi_cmd_needs_an_explicit_flag(tmp_path, cli):
    regdb = make_regdb(tmp_path / "RegDB", people=4, per_person=1, trials=1)
    code, _, err = cli("run", "--method", "hi-cmd", "--dataset", "regdb", "--data-root", regdb, "--dataset-option", "strict=false")
    assert code == 2 and "--untrained" in err
