"""parsing-accuracy / parsing-miou: hand computations, torchmetrics, and the pose-parsing task through the CLI."""

from __future__ import annotations

import pytest
import torch
from harness_plugins.metrics.parsing import (
    ParsingAccuracy, ParsingMIoU, confusion_matrix, iou_per_class, parsing_accuracy, parsing_miou,
)

from harness import DataError, UsageError

PRED = torch.tensor([[0, 0, 1, 1], [0, 2, 2, 1], [3, 3, 2, 0]])
TRUE = torch.tensor([[0, 0, 1, 2], [0, 2, 2, 2], [3, 1, 2, 0]])


def test_hand_computed_accuracy_and_miou():
    # 12 pixels, wrong: (0,3) 2->1, (1,3) 2->1, (2,1) 1->3: accuracy 9/12
    assert parsing_accuracy(PRED, TRUE, num_classes=5) == pytest.approx(75.0)
    # class 0: TP 4, FP 0, FN 0 -> 1; class 1: TP 1, FP 2, FN 1 -> 1/4; class 2: TP 3, FP 0, FN 2 -> 3/5;
    # class 3: TP 1, FP 1, FN 0 -> 1/2; class 4 absent from both: left out of the mean
    ious = iou_per_class(confusion_matrix(PRED, TRUE, 5))
    assert ious[:4].tolist() == pytest.approx([1.0, 0.25, 0.6, 0.5]) and torch.isnan(ious[4])
    assert parsing_miou(PRED, TRUE, num_classes=5) == pytest.approx((1 + 0.25 + 0.6 + 0.5) / 4)
    # a class only predicted (never true) counts with IoU 0
    assert parsing_miou(torch.tensor([[4, 0]]), torch.tensor([[0, 0]]), 5) == pytest.approx((0.5 + 0.0) / 2)


def test_matches_torchmetrics_on_random_maps():
    torchmetrics = pytest.importorskip("torchmetrics")
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 10, (6, 32, 16), generator=generator)
    target[target == 7] = 0  # class 7 absent from the target
    pred = torch.where(torch.rand(target.shape, generator=generator) < 0.6, target,
                       torch.randint(0, 9, target.shape, generator=generator))  # 9 never predicted, 7 sometimes
    reference_iou = torchmetrics.classification.MulticlassJaccardIndex(num_classes=10, average="none")(pred, target)
    present = (torch.bincount(pred.flatten(), minlength=10) + torch.bincount(target.flatten(), minlength=10)) > 0
    assert parsing_miou(pred, target) == pytest.approx(float(reference_iou[present].double().mean()), rel=1e-6)
    accuracy = torchmetrics.classification.MulticlassAccuracy(num_classes=10, average="micro")(pred, target)
    assert parsing_accuracy(pred, target) == pytest.approx(100 * float(accuracy), rel=1e-6)


def test_metric_pools_the_split_not_the_images():
    accuracy, miou = ParsingAccuracy(target_field="target_parsing"), ParsingMIoU(target_field="target_parsing")
    samples = [{"id": "a", "target_parsing": TRUE}, {"id": "b", "target_parsing": torch.zeros(2, 2, dtype=torch.long)}]
    predictions = [PRED, torch.zeros(2, 2, dtype=torch.long)]
    assert accuracy.update(predictions, samples) == pytest.approx([75.0, 100.0])
    miou.update(predictions, samples)
    assert accuracy.compute() == {"accuracy": pytest.approx(100 * 13 / 16)}
    pooled = parsing_miou(torch.cat([PRED.flatten(), torch.zeros(4, dtype=torch.long)])[None],
                          torch.cat([TRUE.flatten(), torch.zeros(4, dtype=torch.long)])[None])
    assert miou.compute() == {"miou": pytest.approx(pooled)}
    assert miou.details()["n"] == 2 and miou.details()["iou_per_class"][9] is None


def test_bad_predictions_are_refused_with_the_sample_id():
    metric = ParsingAccuracy(target_field="target_parsing")
    sample = {"id": "p1", "target_parsing": TRUE}
    with pytest.raises(DataError, match="p1.*integer label map"):
        metric.update([PRED.float()], [sample])
    with pytest.raises(DataError, match="p1.*0..9"):
        metric.update([PRED + 10], [sample])
    with pytest.raises(DataError, match="differ in size"):
        metric.update([PRED[:2]], [sample])
    with pytest.raises(UsageError, match="no pixels"):
        ParsingMIoU(target_field="t").compute()


COPY_PARSING_PLUGIN = '''
from harness import Method, hookimpl


class CopySourceParsing(Method):
    """Predicts the source map unchanged: the floor of the pose-parsing task."""

    name = "copy-source-parsing"
    tasks = frozenset({"pose-parsing"})

    def predict(self, samples):
        return [sample["source_parsing"] for sample in samples]


@hookimpl
def harness_register_methods(register):
    register(CopySourceParsing)
'''


def test_pose_parsing_task_runs_through_the_cli(cli, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "copy_parsing.py").write_text(COPY_PARSING_PLUGIN)
    code, out, err = cli("--plugins-dir", plugins, "run", "--method", "copy-source-parsing", "--dataset",
                         "pose-synth-parsing", "--limit", "20")
    assert code == 0, err
    accuracy = float(next(line.split()[2] for line in out.splitlines() if line.strip().startswith("accuracy")))
    miou = float(next(line.split()[2] for line in out.splitlines() if line.strip().startswith("miou")))
    assert 40 < accuracy < 95 and 0.1 < miou < 0.9  # the source map is a poor guess of the target's


def test_real_pose_sets_refuse_the_parsing_task_without_maps(cli, tmp_path):
    code, out, err = cli("data", "check", "market1501-pose-parsing", "--data-root", tmp_path / "empty")
    assert code == 2
    assert "parsing" in err and str(tmp_path / "empty" / "parsing") in err

