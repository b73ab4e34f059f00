"""Render leaderboards and runs as a static site that works offline from ``index.html``.

Jinja2 with autoescaping: every string from a plugin, a record or a definition is escaped. Files the
site refers to (copied prediction images) are written only under the output folder, with names made
from a whitelist of characters, so a crafted run id or image name cannot escape it.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2

from ..errors import UsageError
from . import stats, svg
from .tables import Board
from .records import Run

GalleryLoader = Callable[[Run, list[str]], dict[str, dict[str, Any]]]
"""(run, sample ids) → {id: {"input": image, "target": image}} from the dataset, for galleries."""
Descriptions = Mapping[tuple[str, str], str]
"""(kind, name) → plugin description, shown on result pages."""

SAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(text: str) -> str:
    """A file name made only of safe characters; never empty, never a dot path."""
    name = SAFE.sub("_", text).lstrip(".") or "_"
    return name[:150]


def weights_origin(method: dict) -> str:
    """Where a run's weights came from, in one line: a release (imported), a training run, or a file."""
    release = method.get("imported_from")
    if release:
        return (f"the authors' release {release.get('imported_from')} ({release.get('format')}, "
                f"sha256 {str(release.get('source_sha256'))[:12]})")
    if method.get("untrained"):
        return f"untrained (seed {method.get('seed')})"
    if method.get("training"):
        training = method["training"]
        return f"trained by harness train on {training.get('dataset')} ({training.get('steps')} steps)"
    return f"checkpoint sha256 {method['checkpoint_sha256'][:12]}" if method.get("checkpoint_sha256") else ""


def run_page(run_id: str) -> str:
    return f"run-{safe_name(run_id)}.html"


def board_page(name: str) -> str:
    return f"lb-{safe_name(name)}.html"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.publish", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["fmt"] = _format
    env.filters["signed"] = lambda v, p=4: "" if v is None else f"{v:+.{p}f}"
    env.globals.update(run_page=run_page, board_page=board_page)
    return env


def _format(value: Any, precision: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (int, float)) and (precision == 0 or abs(value) >= 1e5) and float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.{precision}f}" if isinstance(value, (int, float)) else str(value)


def write_site(boards: list[Board], runs: list[Run], out: Path, *, descriptions: Descriptions | None = None,
               gallery: GalleryLoader | None = None) -> list[Path]:
    """Write index, one page per leaderboard and one per run; returns the pages written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    written = []
    index = env.get_template("index.html").render(boards=boards, runs=runs, title="Leaderboards")
    written.append(_write(out, "index.html", index))
    for board in boards:
        charts = []
        for chart in board.charts:
            if chart.points:
                xs = [x for x, *_ in chart.points]
                log_x = min(xs) > 0 and max(xs) > 100 * min(xs)  # parameter counts spanning decades
                plot = svg.scatter([(x, y, name) for x, y, name, _ in chart.points], chart.spec.x[1], chart.spec.y[2], log_x)
                charts.append((chart, plot))
        html = env.get_template("leaderboard.html").render(board=board, charts=charts, title=board.leaderboard.title)
        written.append(_write(out, board_page(board.leaderboard.name), html))
    for run in runs:
        html = env.get_template("run.html").render(**_run_context(run, out, descriptions or {}, gallery), title=f"Run {run.run_id}")
        written.append(_write(out, run_page(run.run_id), html))
    return written


def _run_context(run: Run, out: Path, descriptions: Descriptions, gallery: GalleryLoader | None) -> dict[str, Any]:
    per_sample = []
    for measured in run.values:
        if not measured.per_sample:
            continue
        sign = 1 if measured.higher_is_better else -1
        values = sorted(measured.per_sample.items(),
                        key=lambda item: (item[1] is not None, sign * item[1] if item[1] is not None else 0))
        bars, plot = svg.histogram(list(measured.per_sample.values()))
        interval = stats.bootstrap_ci(list(measured.per_sample.values()))
        per_sample.append({"measured": measured, "worst_first": values, "bars": bars, "plot": plot, "ci": interval})
    curves = []
    for measured in run.values:
        for key, value in measured.details.items():
            if key != "per_sample" and isinstance(value, list) and len(value) >= 2 and all(isinstance(v, (int, float)) for v in value):
                if (measured.label, key) not in {(c["label"], c["key"]) for c in curves}:
                    curves.append({"label": measured.label, "key": key, "plot": svg.line(value, "position (rank)", key)})
    images = _gallery(run, out, gallery)
    describe = {
        "method": descriptions.get(("method", run.method), ""),
        "dataset": descriptions.get(("dataset", run.dataset), ""),
        **{f"metric {m.metric}": descriptions.get(("metric", m.metric), "") for m in run.values},
        "weights": weights_origin(run.record.get("method", {})),
    }
    return {"run": run, "record_json": json.dumps(run.record, indent=2, default=str), "per_sample": per_sample,
            "curves": curves, "images": images, "describe": describe}


def _gallery(run: Run, out: Path, loader: GalleryLoader | None) -> list[dict[str, str | None]]:
    """Copy the run's stored predictions (and, when the data is at hand, input and ground truth) into the site."""
    saved = [path for path in run.images() if path.is_file()]
    if not saved:
        return []
    folder = out / "images" / safe_name(run.run_id)
    folder.mkdir(parents=True, exist_ok=True)
    _inside(folder, out)
    sources = {}
    if loader is not None:
        try:
            sources = loader(run, [path.stem for path in saved])
        except Exception as exc:  # the data may be gone; the predictions are still worth showing
            sources = {"__error__": {"error": str(exc)}}
    items = []
    for path in saved:
        entry: dict[str, str | None] = {"id": path.stem, "output": _copy(path, folder, out, "output"), "input": None, "target": None}
        for role in ("input", "target"):
            image = sources.get(path.stem, {}).get(role)
            if image is not None:
                entry[role] = _save(image, folder / f"{safe_name(path.stem)}.{role}.png", out)
        items.append(entry)
    return items


def _copy(path: Path, folder: Path, out: Path, role: str) -> str:
    target = folder / f"{safe_name(path.stem)}.{role}.png"
    _inside(target, out)
    shutil.copyfile(path, target)
    return target.relative_to(out).as_posix()


def _save(image: Any, target: Path, out: Path) -> str:
    from ..data import save_png

    _inside(target, out)
    save_png(image, target)
    return target.relative_to(out).as_posix()


def _inside(path: Path, out: Path) -> None:
    if not path.resolve().is_relative_to(out.resolve()):
        raise UsageError(f"refusing to write {path}: outside the output folder {out}")


def _write(out: Path, name: str, text: str) -> Path:
    target = out / safe_name(name)
    _inside(target, out)
    target.write_text(text, encoding="utf-8")
    return target
