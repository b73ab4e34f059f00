"""The public plugin API: what a task, method, dataset and metric are.

Plugins subclass `Method`, `Dataset` and `Metric` and register the classes through the hooks in
`harness.hookspecs`. The runner only ever talks to these base classes, so a new task (inpainting,
re-identification, ...) needs new plugins, never a change to the core.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import DataError, UsageError

if TYPE_CHECKING:
    from .train.context import TrainContext

Sample = dict[str, Any]
"""One dataset item: always an ``"id"`` (stable, unique within a split) plus the fields its task names."""

@dataclasses.dataclass(frozen=True)
class Option:
    """A declared, typed, documented option of a method, dataset or metric."""

    name: str
    default: Any
    help: str
    type: type | None = None
    choices: tuple[Any, ...] | None = None

    @property
    def value_type(self) -> type:
        return self.type or (type(self.default) if self.default is not None else str)

    def parse(self, value: Any, owner: str) -> Any:
        """Coerce a value (often a CLI string) to the option's type and check its choices."""
        kind = self.value_type
        try:
            if isinstance(value, str) and kind is bool:
                lowered = value.strip().lower()
                if lowered not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                    raise ValueError(value)
                parsed: Any = lowered in {"1", "true", "yes", "on"}
            elif isinstance(value, str) and kind in (tuple, list):
                parsed = kind(part.strip() for part in value.split(",") if part.strip())
            elif value is None or isinstance(value, kind):
                parsed = value
            else:
                parsed = kind(value)
        except (TypeError, ValueError):
            raise UsageError(
                f"{owner}: option {self.name!r} expects {kind.__name__}, got {value!r}"
            ) from None
        if self.choices is not None and parsed not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise UsageError(f"{owner}: option {self.name!r} must be one of {allowed}; got {parsed!r}")
        return parsed


def resolve_options(owner: str, declared: Iterable[Option], given: Mapping[str, Any]) -> dict[str, Any]:
    """Merge given values over declared defaults, rejecting unknown names."""
    by_name = {option.name: option for option in declared}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        known = ", ".join(sorted(by_name)) or "none"
        raise UsageError(f"{owner}: unknown option(s) {', '.join(unknown)}; known options: {known}")
    return {
        name: option.parse(given[name], owner) if name in given else option.default
        for name, option in by_name.items()
    }


@dataclasses.dataclass(frozen=True)
class Task:
    """What a sample of this task holds and what a method must return for it.

    ``inputs`` are the sample fields a method sees; ``target`` (if any) is the field a prediction is
    compared with; ``output`` names the kind of prediction (``"image"``, ``"embedding"`` or
    ``"label-map"``: an int64 (H, W) tensor of class labels); ``fields`` documents every field a dataset of this task provides. ``paired`` says whether the
    target is the ground truth *of this sample* (deraining, inpainting) or only an unpaired example of
    the target domain (unpaired translation): metrics that compare pixel by pixel need the former.
    """

    name: str
    description: str
    inputs: tuple[str, ...]
    output: str
    fields: Mapping[str, str]
    target: str | None = None
    paired: bool = True
    optional_inputs: tuple[str, ...] = ()
    """Fields a method also sees when the dataset provides them (e.g. a parsing map only some releases
    ship); a method that needs one checks for it and names the missing field."""

    def method_view(self, sample: Sample) -> Sample:
        """The part of a sample a method may see: its inputs and its id, never the target."""
        view = {"id": sample["id"], **{name: sample[name] for name in self.inputs}}
        view.update({name: sample[name] for name in self.optional_inputs if name in sample})
        return view

    def check_sample(self, sample: Sample, source: str) -> None:
        missing = [name for name in ("id", *self.fields) if name not in sample]
        if missing:
            raise UsageError(f"{source}: sample lacks field(s) {', '.join(missing)} required by task {self.name!r}")


class Plugin:
    """Common metadata of every registered method, dataset and metric."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[tuple[Option, ...]] = ()
    version: ClassVar[str] = "1"

    def __init__(self, **options: Any) -> None:
        self.config: dict[str, Any] = resolve_options(self.name, self.options, options)

    @classmethod
    def summary(cls) -> str:
        """First line of the description, for listings."""
        text = (cls.description or cls.__doc__ or "").strip()
        return text.splitlines()[0] if text else ""


class TrainingRecipe:
    """A method's training, driven one step at a time by the core (``harness train``).

    The recipe owns everything that happens inside a step (forward passes, every ``backward``, every
    optimizer and scheduler step, in whatever order the paper prescribes); the core owns the loop,
    checkpoints, resume, logging, evaluation and devices. Subclasses register what they train in
    ``networks``, ``optimizers`` and ``schedulers`` and anything else with state (image pools, EMA
    copies) in ``stateful``, so that ``state_dict()`` covers all of it: a D optimizer hidden from the
    core would make resume silently wrong. Everything saved must be tensors or plain Python values
    (checkpoints are loaded with ``weights_only=True``).

    ``exported`` names the network (or a ``stateful`` entry with an ``export()``, e.g. an EMA copy)
    whose weights ``export()`` returns: the file ``harness run --checkpoint`` loads.
    """

    description: dict[str, Any]
    """What the recipe does (optimizers, learning rates, losses, data), recorded in the training manifest."""
    exported: str

    def __init__(self, description: Mapping[str, Any] | None = None, exported: str = "") -> None:
        self.description = dict(description or {})
        self.exported = exported
        self.networks: dict[str, Any] = {}
        self.optimizers: dict[str, Any] = {}
        self.schedulers: dict[str, Any] = {}
        self.stateful: dict[str, Any] = {}

    def train_step(self, step: int) -> dict[str, float]:
        """Run training step ``step`` (0-based) and return every loss to log, as plain floats."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where training stopped (the core adds step and RNG states)."""
        return {
            group: {name: item.state_dict() for name, item in getattr(self, group).items()}
            for group in ("networks", "optimizers", "schedulers", "stateful")
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned; a missing or extra entry is an error, never ignored."""
        for group in ("networks", "optimizers", "schedulers", "stateful"):
            registered, saved = getattr(self, group), state.get(group, {})
            if set(registered) != set(saved):
                raise DataError(
                    f"saved training state holds {group} {sorted(saved)}, the recipe registers {sorted(registered)}"
                )
            for name, item in registered.items():
                item.load_state_dict(saved[name])

    def export(self) -> dict[str, Any]:
        """The weights `harness run --checkpoint` loads (a tensor state dict of the exported network)."""
        if self.exported in self.stateful:
            return self.stateful[self.exported].export()
        if self.exported not in self.networks:
            raise UsageError(
                f"recipe exports {self.exported!r}, which is neither a registered network "
                f"({', '.join(self.networks) or 'none'}) nor an exportable stateful entry"
            )
        return self.networks[self.exported].state_dict()

    def learning_rates(self) -> dict[str, float]:
        """Current learning rate of every optimizer parameter group, for the training log."""
        rates: dict[str, float] = {}
        for name, optimizer in self.optimizers.items():
            groups = optimizer.param_groups
            for index, group in enumerate(groups):
                rates[name if len(groups) == 1 else f"{name}/{index}"] = float(group["lr"])
        return rates

    def train(self, mode: bool = True) -> None:
        """Put every registered network in training (or evaluation) mode."""
        for network in self.networks.values():
            network.train(mode)


@dataclasses.dataclass(frozen=True)
class OfficialWeights:
    """The weights a method's authors released, as they released them (shown by ``harness info``).

    ``suffixes`` are the file endings `Method.convert_official` reads (``harness weights import`` and
    ``harness run --checkpoint`` convert such a file); where Python cannot read the format without the
    original framework, ``suffixes`` is empty and ``route`` says how to convert it.
    """

    format: str
    """The file format, e.g. ``"Torch7 .t7 (torchfile)"``."""
    source: str
    """Where the files are published (repository or page) and under which names."""
    suffixes: tuple[str, ...] = ()
    route: str = ""
    """How to get from the released file to one the harness loads, when it cannot read it itself (or, when
    nothing is released, how to get weights)."""
    released: bool = True
    """False when the authors released no weights (checked, so that nobody looks again): ``source`` says
    where it was checked, ``route`` how to get weights instead."""


class Method(Plugin):
    """A model (or a model-free baseline) that produces predictions for the samples of a task."""

    tasks: ClassVar[frozenset[str]] = frozenset()
    needs_checkpoint: ClassVar[bool] = False
    weights_filename: ClassVar[str | None] = None
    """File name looked up in ``$TORCH_HOME/hub/checkpoints/`` when no checkpoint path is given."""
    batch_size: ClassVar[int] = 1
    """Samples per `predict` call when the user gives no ``--batch-size``."""
    deterministic: ClassVar[bool] = True
    """Same inputs, weights and options give the same predictions; if False, stored predictions are never reused."""
    model_options: ClassVar[tuple[str, ...]] = ()
    """Options that shape the network: a checkpoint trained with other values is refused (training manifest)."""
    scores_external_outputs: ClassVar[bool] = False
    """True for methods that score outputs produced elsewhere (a folder of images, a features file) given
    by an option or ``--checkpoint``: a grid over all installed plugins includes them only when given one."""

    official_weights: ClassVar[OfficialWeights | None] = None
    """The authors' released weights, if any; with ``suffixes``, `convert_official` reads them."""

    def build(self) -> Any | None:
        """Create the network (``torch.nn.Module``) with random weights, or ``None`` for model-free methods."""
        return None

    def convert_official(self, path: Path) -> dict[str, Any]:
        """The state dict of `build`'s network (its key names, its shapes) from the authors' released file
        ``path``, in the format `official_weights` declares. Methods whose official files are plain torch
        state dicts need not override it."""
        from .checkpoints import load_state_dict

        return load_state_dict(Path(path))

    def is_official_file(self, path: Path) -> bool:
        """Whether ``path`` is in the released format that `convert_official` reads (by its ending)."""
        declared = self.official_weights
        return bool(declared and declared.suffixes) and Path(path).name.lower().endswith(declared.suffixes)

    def load(self, checkpoint: Path | None, device: str) -> None:
        """Prepare for prediction. The default serves network methods: build the network, load ``checkpoint``
        strictly (`harness.checkpoints.load_into`; a file in the official released format through
        `convert_official`) and move it to ``device`` in eval mode; model-free methods (``build()`` is
        ``None``) have nothing to load. Override it for other weight formats."""
        model = self.build()
        if model is None:
            return
        if checkpoint is not None:
            from .checkpoints import load_into, load_state_into

            if self.is_official_file(Path(checkpoint)):
                load_state_into(model, self.convert_official(Path(checkpoint)), Path(checkpoint))
            else:
                load_into(model, Path(checkpoint))
        self._model = model.to(device).eval()
        self._device = device

    def predict(self, samples: list[Sample]) -> list[Any]:
        """Return one prediction per sample (each sample holds only the task's inputs and its id)."""
        raise NotImplementedError

    default_steps: ClassVar[int] = 1000
    """Training steps when ``harness train`` gets no ``--steps`` (the paper's schedule, where known)."""
    default_batch_size: ClassVar[int] = 16
    """Global batch size when ``harness train`` gets no ``--batch-size``."""

    def default_batch_size_for(self, dataset: "Dataset") -> int:
        """Global batch size when ``harness train`` gets no ``--batch-size``, for ``dataset``: methods whose
        papers train each dataset with its own batch override this; the default is `default_batch_size`."""
        return self.default_batch_size

    def training_recipe(self, dataset: "Dataset", context: "TrainContext") -> TrainingRecipe:
        """The method's training recipe for ``dataset``; ``context`` holds the batch size, steps, seed,
        device and the helpers for mixed precision, data parallelism and batch loading. Methods that
        cannot train leave this unimplemented."""
        raise UsageError(f"method {self.name!r} cannot be trained")

    @classmethod
    def trainable(cls) -> bool:
        return cls.training_recipe is not Method.training_recipe

    @property
    def model(self) -> Any | None:
        """The loaded network, if any (used for parameter counts and latency)."""
        return getattr(self, "_model", None)


@dataclasses.dataclass(frozen=True)
class Reference:
    """The reference image set of a split for distribution metrics (FID, KID), independent of ``--limit``.

    ``digest`` identifies its content (it enters the score key), ``files`` are read in order.
    """

    files: tuple[Path, ...]
    digest: str
    description: str = ""


class Dataset(Plugin):
    """Parses one dataset layout on disk into samples; it does not transform or score them."""

    task: ClassVar[str]
    splits: ClassVar[tuple[str, ...]] = ("test",)
    default_split: ClassVar[str] = "test"
    default_metrics: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    """Metric names run when none are given, each with the metric parameters this dataset's protocol fixes."""
    source: ClassVar[str] = ""
    """Where the data comes from, shown when it is missing."""
    layout: ClassVar[str] = ""
    """The exact expected folder layout, shown when it is missing or incomplete."""
    official_counts: ClassVar[Mapping[str, int]] = {}
    """What the official release holds (e.g. images per folder, identities per split), keyed as `counts`
    reports them; ``harness data check`` compares the two."""

    def __init__(self, root: Path, **options: Any) -> None:
        super().__init__(**options)
        self.root = Path(root)

    def verify(self, split: str) -> None:
        """Raise `DataError` (naming the path and the expected layout) if ``split`` is missing or incomplete."""

    def files(self, split: str) -> list[Path]:
        """The files a split reads, for the data digest recorded with every result."""
        return []

    def index(self, split: str) -> list[Sample]:
        """The split's samples without decoding anything: each row holds the ``id``, its labels
        (e.g. ``pid``, ``camid``, ``modality``) and ``paths`` (field → file), in a stable order.

        Training samplers draw from it (identity-balanced batches need the labels of the whole split,
        not its pixels); `load` then decodes only the rows a batch uses."""
        raise UsageError(f"dataset {self.name!r} cannot list its samples without reading them (no index())")

    def load(self, row: Sample) -> Sample:
        """Decode one row of `index` into a full sample (the fields its task names)."""
        raise UsageError(f"dataset {self.name!r} cannot load single samples (no load())")

    def derived_digest(self, split: str) -> str | None:
        """Digest of what the samples derive from beyond `files` (e.g. generated inpainting masks).

        Mixed into the data digest recorded with every result, so a changed derivation is a changed
        data set; ``None`` when the samples are read from the files alone.
        """
        return None

    def samples(self, split: str) -> Iterator[Sample]:
        """Every sample of a split, decoded one at a time (evaluation iterates this)."""
        self.verify(split)
        for row in self.index(split):
            yield self.load(row)

    def count(self, split: str) -> int | None:
        """Number of samples in a split, for progress bars (``None`` if unknown)."""
        return None

    def describe(self) -> dict[str, Any]:
        """What was found on disk (layout variant, counts), recorded with every result."""
        return {}

    def reference(self, split: str) -> Reference | None:
        """The split's reference set for distribution metrics; ``None``: they use each sample's target."""
        return None

    def counts(self) -> dict[str, int]:
        """What the layout on disk holds, keyed as `official_counts` (``harness data check`` prints both)."""
        return {}

    def metric_params(self, metric: str) -> dict[str, Any]:
        """Protocol parameters this dataset fixes for a metric (e.g. the re-id evaluation protocol)."""
        return dict(self.default_metrics.get(metric, {}))


class Metric(Plugin):
    """Accumulates over a split with ``update`` and reports with ``compute`` (torchmetrics style).

    ``options`` are the metric's parameters; all of them, plus ``convention()``, are recorded with
    every result.
    """

    higher_is_better: ClassVar[bool] = True
    outputs: ClassVar[frozenset[str]] = frozenset({"image"})
    """Kinds of prediction (a task's ``output``) this metric can score."""
    needs_target: ClassVar[bool] = True
    needs_paired_target: ClassVar[bool] = False
    """True when each prediction is compared with its own sample's target (PSNR, SSIM, L1): refused on
    tasks whose target is unpaired (`Task.paired` False)."""
    needs_model: ClassVar[bool] = False
    """True for metrics of the model itself (parameters, latency) rather than of its predictions."""
    uses_reference: ClassVar[bool] = False
    """True for distribution metrics that can take a dataset's `Reference` set (`bind_reference`)."""
    preset_option: ClassVar[str | None] = None
    """The option a label's tag selects when the tag is one of its choices (``ssim@sdsen-official``)."""

    def __init__(self, target_field: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.target_field = target_field
        """The sample field holding the ground truth; the runner binds the task's (`Task.target`)."""
        self.device: str | None = None
        """Where the metric computes; the runner binds the cell's device (None: the metric's own default,
        which for an ``auto`` device option is `harness.run.devices.resolve_device("auto")`)."""

    def target_field_of(self, sample: Sample) -> str:
        """The bound ground-truth field; a metric used from Python must be told it (``target_field=``)."""
        if self.target_field is None:
            raise UsageError(f"{self.name}: no target field bound; create it with target_field='<sample field>'")
        if self.target_field not in sample:
            raise DataError(f"{self.name}: sample {sample.get('id')!r} has no ground-truth field {self.target_field!r}")
        return self.target_field

    def target(self, sample: Sample) -> Any:
        """The ground truth of a sample."""
        return sample[self.target_field_of(sample)]

    def reads(self) -> dict[str, str]:
        """Digests of files the metric reads besides the predictions (weights, reference sets); they enter
        the score key, so changing such a file invalidates stored scores."""
        return {}

    def bind_reference(self, reference: Reference) -> None:
        """Called (for `uses_reference` metrics) with the dataset's reference set before scoring."""

    def reset(self) -> None:
        """Forget all accumulated state."""

    def update(self, predictions: list[Any], samples: list[Sample]) -> list[float] | None:
        """Accumulate a batch; return per-sample values when the metric has them."""
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        """The aggregate values, keyed by the names shown in tables (e.g. ``psnr`` or ``rank-1``)."""
        raise NotImplementedError

    def details(self) -> dict[str, Any]:
        """Extra structured output stored in the record (curves, per-trial values)."""
        return {}

    def convention(self) -> dict[str, Any]:
        """Everything that makes this metric's numbers comparable (beyond its options)."""
        return {}

    def bind_model(self, method: Method, task: Task, device: str) -> None:
        """Called for `needs_model` metrics before scoring, with the loaded method and the task."""


@dataclasses.dataclass(frozen=True)
class Job:
    """One unit of grid work (train a method, or evaluate a cell), as an executor sees it.

    ``payload`` is plain JSON data so any executor can ship a job to another process or node;
    ``cpus``/``gpus`` are what one job needs, for executors that reserve resources.
    """

    id: str
    kind: str
    payload: Mapping[str, Any]
    cpus: int = 1
    gpus: int = 0


JobResult = dict[str, Any]
"""What a job function returns: at least ``"status"`` (``ok``/``failed``/``lost``) and, when failed, ``"error"``."""


class Executor(Plugin):
    """Runs grid jobs somewhere: worker processes, a Ray cluster, a Slurm queue, a site's own scheduler.

    The driver owns planning, caching and the result index; an executor only calls ``function(job)``
    for each job (``function`` is an importable top-level function, so it pickles by reference)
    and reports results. Workers write run folders into the shared results directory themselves.
    """

    def map(
        self, function: Callable[[Job], JobResult], jobs: Sequence[Job], workdir: Path
    ) -> Iterator[tuple[Job, JobResult] | None]:
        """Run ``function`` on every job; yield ``(job, result)`` as each finishes, in any order.

        Yield ``None`` at least every second or so while waiting, so the driver can refresh its
        view. A job whose worker died must still be yielded, with ``{"status": "lost", "error": ...}``.
        ``workdir`` is a folder in the results directory for the executor's own files (logs, scripts).
        """
        raise NotImplementedError
