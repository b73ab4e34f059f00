"""LPIPS v0.1 (AlexNet) against pyiqa's implementation of the lpips package, with random weights saved
under the real file names (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from harness import DataError
from harness_plugins.metrics.lpips import LPIPS, lpips_distance
from harness_plugins.shared.lpips_net import ALEXNET_FILE, CHANNELS, LPIPS_FILE, LPIPSAlex


@pytest.fixture
def weights(monkeypatch):
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), folder / ALEXNET_FILE)
    lins = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(CHANNELS)}
    torch.save(lins, folder / LPIPS_FILE)

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return folder


def test_matches_pyiqa_lpips(weights):
    from pyiqa.archs.lpips_arch import LPIPS as Reference

    reference = Reference(net="alex", version="0.1", pretrained_model_path=str(weights / LPIPS_FILE)).eval()
    network = LPIPSAlex.from_files(weights / ALEXNET_FILE, weights / LPIPS_FILE)
    generator = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 64, 80, generator=generator), torch.rand(2, 3, 64, 80, generator=generator)
    with torch.no_grad():
        expected = reference(x, y, normalize=True).flatten().double()
    assert torch.allclose(lpips_distance(x, y, network), expected, rtol=1e-5, atol=1e-7)
    assert float(lpips_distance(x[0], x[0], network)) == 0.0


def test_metric_and_missing_weights(weights, tmp_path):
    metric = LPIPS(target_field="image")
    image = torch.rand(3, 64, 64)
    values = metric.update([image.flip(-1)], [{"id": "a", "image": image}])
    assert values[0] > 0 and metric.compute()["lpips"] == values[0]
    (weights / LPIPS_FILE).unlink()
    with pytest.raises(DataError, match=LPIPS_FILE):
        LPIPS(target_field="image").update([image], [{"id": "a", "image": image}])
