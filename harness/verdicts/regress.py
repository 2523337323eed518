"""Regression checks: a run against a stored baseline, per model and task (``harness regress``).

A baseline (``results/baselines/<name>.json``) keeps, for every cell of a run,
each item's score and prediction, the per-item latencies, the peak memory, the
cell's key parts and the hardware it was measured on. A later run is compared
cell by cell on the same items, so the quality test is paired (McNemar's exact
test for accuracy, a paired bootstrap for ROUGE): lm-eval's comparator uses an
unpaired test on paired data, which wastes most of the evidence.

What fails (each threshold in ``configs/regress/default.yaml``):
- quality: the primary metric drops by more than ``quality_tolerance`` on the
  common items, and either the configuration is exact (float32 and the same
  batch size: an unchanged setup reproduces every prediction, so any drop comes
  from the change) or the paired test is significant at ``alpha`` (bf16/fp16 and
  GPUs flip a few predictions without any change);
- latency: the ratio of median per-item latency (run / baseline) is above
  ``latency_ratio_max`` with its whole 95% paired-bootstrap interval (items
  resampled together), so noise alone does not fail a build; medians below
  ``latency_min_s`` are not judged (at a few milliseconds, overhead and the
  scheduler dominate);
- memory: the peak memory ratio is above ``memory_ratio_max`` (GPU allocator
  peak) or ``memory_ratio_max_rss`` (CPU process RSS, runtime included);
- identity: a changed item set, task version or model identity, or a cell of the
  baseline missing from the run (reported; a failure unless allowed with ``--allow``).
Latency and memory measured on another hardware class than the baseline's
(``harness.measure.hardware``: CPU model and kernel features, cores and threads;
GPU, driver and CUDA) are not compared: one line names both classes, and quality
is still compared (``--strict-hardware`` refuses the comparison instead). Keep
one baseline per runner class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from harness.analysis.flips import A_LOWER, A_WRONG_B_RIGHT, changed_predictions, outcome
from harness.analysis.stats import Estimate, mcnemar_exact, paired_difference, paired_ratio
from harness.config.schema import RegressConfig
from harness.errors import HarnessError
from harness.measure.environment import EnvironmentRecord
from harness.measure.hardware import HardwareClass, HardwareRecord
from harness.results.cells import digest, now_iso
from harness.results.comparison import load_cells, read_run
from harness.results.records import read_json, write_json
from harness.serialize import MissingFieldsError, Serializable
from harness.tasks.types import is_classification, item_score_key, primary_metric

BASELINE_FORMAT = 1
ALLOWABLE = ("items", "task", "model", "missing")
OK, REGRESSION, CHANGED, INFO = "ok", "REGRESSION", "changed", "info"


def hardware_of(environment: EnvironmentRecord, hardware_class: Optional[HardwareRecord] = None) -> str:
    """Where latency and memory were measured: the cell's hardware class, or (a cell from before classes were
    recorded) the GPUs or the CPU model and core count of its run."""
    if hardware_class:
        hw = HardwareClass.from_dict(hardware_class)
        return f"{'gpu' if hw.gpu else 'server' if hw.server else 'cpu'}: {hw.label} [class {hw.id}]"
    cuda = (environment or {}).get("cuda") or {}
    if cuda.get("devices"):
        return "gpu: " + ", ".join(cuda["devices"])
    return f"cpu: {environment.get('cpu', 'unknown')} x{environment.get('cpu_count', '?')}"


def _exact(cell: BaselineCell) -> bool:
    return cell.parts.get("dtype") == "float32"


def _task_version(cell: BaselineCell) -> str:
    """The task's identity without its item selection (the item set is compared on its own)."""
    parts = cell.parts
    task = {k: v for k, v in parts.get("task", {}).items() if k != "sample_ids"}
    return digest(
        {"task": task, "generation": parts.get("generation"), "scoring_version": parts.get("scoring_version")}
    )


@dataclass
class BaselineItem(Serializable):
    score: float
    prediction: str
    latency_s: float  # the item's share of model time (its request latency in latency mode)


@dataclass
class BaselineCell(Serializable):
    """One model on one task as the baseline keeps it: each item's score, prediction and time; peak memory; identity."""

    model: str
    task: str
    key: str
    task_type: str
    metric: str
    # the cell key's parts as the store records them (model identity, task definition, generation, dtype, batch size
    # and what else a key holds): an open mapping, compared and digested as a whole
    parts: dict[str, Any]
    hardware: str
    items: dict[str, BaselineItem]
    peak_memory_bytes: Optional[int]


@dataclass
class Baseline(Serializable):
    """A baseline file (``results/baselines/<name>.json``): every cell of a good run."""

    where = "a baseline"
    lead = ("format",)

    name: str
    created_at: str
    run_dir: str
    task_group: str
    cells: dict[str, BaselineCell]  # "<model>/<task>" -> cell
    environment: EnvironmentRecord = field(default_factory=lambda: EnvironmentRecord())
    format: int = BASELINE_FORMAT

    @property
    def hardware(self) -> str:
        """Where its cells were measured (each cell's class; the run's machine for a baseline of older cells)."""
        return "; ".join(sorted({c.hardware for c in self.cells.values()})) or hardware_of(self.environment)


def baseline_from_run(run_dir: Path, name: str) -> Baseline:
    """A baseline holding every cell of a run (refused when a cell is missing or incomplete)."""
    plan, refs = read_run(run_dir)
    cells, missing = load_cells(refs)
    if missing:
        raise HarnessError(
            f"{run_dir} has incomplete cells ({', '.join(f'{r.model}/{r.task}' for r in missing)})",
            "rerun the same command to complete them before writing a baseline",
        )
    env_path = Path(run_dir) / "environment.json"
    out = Baseline(
        name, now_iso(), str(run_dir), plan.task_group, {}, read_json(env_path) if env_path.is_file() else {}
    )
    for cell in cells:
        m = cell.manifest
        task_type = m.task_info["type"]
        metric, key = primary_metric(task_type), item_score_key(task_type)
        peaks = [s["memory"].get("peak_bytes") for s in m.sessions if s.get("n") and s.get("memory")]
        out.cells[f"{cell.ref.model}/{cell.ref.task}"] = BaselineCell(
            model=cell.ref.model,
            task=cell.ref.task,
            key=cell.ref.key,
            task_type=task_type,
            metric=metric,
            parts=m.parts,
            hardware=hardware_of(m.environment, m.hardware),
            items={r.sample_id: BaselineItem(r.scores.get(key), r.prediction, r.item_s) for r in cell.records},  # type: ignore[arg-type]
            peak_memory_bytes=max(p for p in peaks if p is not None) if any(p is not None for p in peaks) else None,
        )
    return out


@dataclass
class Finding:
    cell: str
    kind: str  # quality | latency | memory | items | task | model | missing | hardware | predictions
    status: str  # REGRESSION | changed | ok | info
    text: str

    def line(self) -> str:
        return f"{self.status}: {self.cell}: {self.kind}: {self.text}"


@dataclass
class CellResult:
    cell: str
    metric: str = "-"
    baseline: Optional[float] = None
    run: Optional[float] = None
    delta: Optional[Estimate] = None  # run minus baseline, paired
    p_value: Optional[float] = None
    latency_ratio: Optional[Estimate] = None  # run / baseline median
    memory_ratio: Optional[float] = None
    n: int = 0
    status: str = OK
    findings: list[Finding] = field(default_factory=list)


def _fail_or_allowed(kind: str, allow: set[str]) -> str:
    return CHANGED if kind in allow else REGRESSION


def _identity(name: str, base: BaselineCell, cur: BaselineCell, allow: set[str]) -> list[Finding]:
    r"""A changed model, task version or item set: a regression unless ``--allow``\ ed."""
    f = []
    if base.parts.get("model") != cur.parts.get("model"):
        f.append(
            Finding(
                name,
                "model",
                _fail_or_allowed("model", allow),
                "the model's identity changed (weights, revision or random config)",
            )
        )
    if _task_version(base) != _task_version(cur):
        f.append(
            Finding(
                name,
                "task",
                _fail_or_allowed("task", allow),
                "the task's version changed (data, prompt, labels, few-shot/chat settings, generation or scoring version)",
            )
        )
    b_ids, c_ids = list(base.items), list(cur.items)
    if b_ids != c_ids:
        gone, new = sorted(set(b_ids) - set(c_ids)), sorted(set(c_ids) - set(b_ids))
        f.append(
            Finding(
                name,
                "items",
                _fail_or_allowed("items", allow),
                f"the item set changed: {len(gone)} removed {gone[:5]}, {len(new)} added {new[:5]}",
            )
        )
    return f


@dataclass(frozen=True)
class _QualityTest:
    """The paired quality test's outcome: the two means on the common items and whether the drop is significant."""

    baseline: float
    run: float
    significant: bool

    @property
    def drop(self) -> float:
        """How far the run's mean fell below the baseline's."""
        return self.baseline - self.run


def _paired_test(
    res: CellResult, base: BaselineCell, cur: BaselineCell, common: list[str], cfg: RegressConfig
) -> _QualityTest:
    """Fill the cell's means, paired difference and McNemar p, and test the drop on the common items."""
    b = [float(base.items[i].score) for i in common]
    c = [float(cur.items[i].score) for i in common]
    res.baseline, res.run = float(np.mean(b)), float(np.mean(c))
    res.delta = d = paired_difference(c, b, seed=cfg.seed)
    if is_classification(base.task_type):
        res.p_value = mcnemar_exact([x > 0 for x in c], [x > 0 for x in b]).p_value
        significant = res.p_value < cfg.alpha
    else:
        significant = d.high < 0
    return _QualityTest(res.baseline, res.run, significant)


def _quality_finding(res: CellResult, test: _QualityTest, exact: bool, cfg: RegressConfig) -> None:
    """A regression for a drop beyond tolerance that is exact or significant; a note for one that is not."""
    drop = test.drop
    if drop > cfg.quality_tolerance and (exact or test.significant):
        why = "exact configuration: the drop is the change's" if exact else f"paired test significant at {cfg.alpha:g}"
        res.findings.append(
            Finding(
                res.cell,
                "quality",
                REGRESSION,
                f"{res.metric} {test.baseline * 100:.1f} -> {test.run * 100:.1f} "
                f"({-drop * 100:+.1f} points, tolerance {cfg.quality_tolerance * 100:g}; {why})",
            )
        )
    elif drop > cfg.quality_tolerance:
        res.findings.append(
            Finding(
                res.cell,
                "quality",
                INFO,
                f"{res.metric} dropped {drop * 100:.1f} points but the paired test is not significant (p/interval in the table)",
            )
        )


def _worse_items(res: CellResult, base: BaselineCell, cur: BaselineCell, common: list[str], cfg: RegressConfig) -> None:
    """List the regressed cell's flips: items right (or better) in the baseline and wrong (or worse) now."""
    name, f = res.cell, res.findings
    worse = [
        i
        for i in common
        if outcome(base.task_type, cur.items[i].score, base.items[i].score) in (A_WRONG_B_RIGHT, A_LOWER)
    ]
    for i in worse[: cfg.max_listed_predictions]:
        f.append(
            Finding(
                name,
                "predictions",
                INFO,
                f"item {i} worse: {base.items[i].prediction!r} ({base.items[i].score:.2f}) -> "
                f"{cur.items[i].prediction!r} ({cur.items[i].score:.2f})",
            )
        )
    if worse:
        f.append(
            Finding(
                name,
                "predictions",
                INFO,
                f"{len(worse)} item(s) worse than the baseline; side by side: harness flips BASELINE_RUN RUN "
                f"--models {base.model} --task {base.task}",
            )
        )


def _changed_predictions(
    res: CellResult, base: BaselineCell, cur: BaselineCell, common: list[str], cfg: RegressConfig
) -> None:
    """List the predictions that changed in an exact configuration (any change is the change's)."""
    name, f = res.cell, res.findings
    flips = changed_predictions(
        common,
        {i: base.items[i].prediction for i in common},
        {i: cur.items[i].prediction for i in common},
    )
    for i in flips[: cfg.max_listed_predictions]:
        f.append(
            Finding(name, "predictions", INFO, f"item {i}: {base.items[i].prediction!r} -> {cur.items[i].prediction!r}")
        )
    if len(flips) > cfg.max_listed_predictions:
        f.append(
            Finding(
                name,
                "predictions",
                INFO,
                f"... and {len(flips) - cfg.max_listed_predictions} more changed predictions",
            )
        )


def _quality(
    res: CellResult, base: BaselineCell, cur: BaselineCell, common: list[str], exact: bool, cfg: RegressConfig
) -> None:
    """The paired quality test on the common items, and the predictions that flipped in an exact configuration."""
    test = _paired_test(res, base, cur, common, cfg)
    _quality_finding(res, test, exact, cfg)
    if not exact and test.drop > cfg.quality_tolerance and test.significant:
        _worse_items(res, base, cur, common, cfg)
    if exact:
        _changed_predictions(res, base, cur, common, cfg)


def _speed_and_memory(
    res: CellResult, base: BaselineCell, cur: BaselineCell, common: list[str], cfg: RegressConfig
) -> None:
    """Median per-item latency (paired bootstrap ratio) and peak memory, on the baseline's hardware only."""
    name, f = res.cell, res.findings
    res.latency_ratio = lat = paired_ratio(
        [cur.items[i].latency_s for i in common], [base.items[i].latency_s for i in common], np.median, seed=cfg.seed
    )
    base_median = float(np.median([base.items[i].latency_s for i in common]))
    if base_median < cfg.latency_min_s:
        f.append(
            Finding(
                name,
                "latency",
                INFO,
                f"not judged: the baseline's median latency {base_median * 1000:.1f} ms is below "
                f"latency_min_s={cfg.latency_min_s:g} s, where overhead and scheduler noise dominate",
            )
        )
    elif lat.low > cfg.latency_ratio_max:
        f.append(
            Finding(
                name,
                "latency",
                REGRESSION,
                f"median latency x{lat.value:.2f} [{lat.low:.2f}, {lat.high:.2f}] > {cfg.latency_ratio_max:g}",
            )
        )
    if base.peak_memory_bytes and cur.peak_memory_bytes:
        res.memory_ratio = cur.peak_memory_bytes / base.peak_memory_bytes
        limit = cfg.memory_ratio_max_rss if base.hardware.startswith("cpu") else cfg.memory_ratio_max
        if res.memory_ratio > limit:
            f.append(
                Finding(
                    name,
                    "memory",
                    REGRESSION,
                    f"peak memory x{res.memory_ratio:.2f} ({base.peak_memory_bytes / 2**20:.0f} -> "
                    f"{cur.peak_memory_bytes / 2**20:.0f} MiB) > {limit:g}",
                )
            )


def compare_cell(name: str, base: BaselineCell, cur: BaselineCell, cfg: RegressConfig, allow: set[str]) -> CellResult:
    """One cell of the run against the same cell of the baseline."""
    res = CellResult(name, metric=base.metric)
    res.findings += _identity(name, base, cur, allow)
    common = [i for i in base.items if i in cur.items]
    res.n = len(common)
    exact = _exact(base) and _exact(cur) and base.parts.get("batch_size") == cur.parts.get("batch_size")
    if common:
        _quality(res, base, cur, common, exact, cfg)
    if base.hardware != cur.hardware:
        res.findings.append(
            Finding(
                name,
                "hardware",
                INFO,
                f"latency and memory not compared (another hardware class): baseline measured on {base.hardware}, "
                f"this run on {cur.hardware}",
            )
        )
    elif common:
        _speed_and_memory(res, base, cur, common, cfg)
    f = res.findings
    res.status = (
        REGRESSION if any(x.status == REGRESSION for x in f) else CHANGED if any(x.status == CHANGED for x in f) else OK
    )
    return res


@dataclass
class RegressReport:
    results: list[CellResult]
    findings: list[Finding]
    other_hardware: Optional[str] = None  # the baseline's and the run's hardware, where they differ

    @property
    def regressed(self) -> bool:
        return any(x.status == REGRESSION for x in self.findings)


def other_hardware(baseline: Baseline, current: dict[str, BaselineCell]) -> Optional[str]:
    """One line naming the hardware of the baseline and of the run where a shared cell differs; None: like with like."""
    pairs = sorted({(baseline.cells[n].hardware, c.hardware) for n, c in current.items() if n in baseline.cells})
    moved = [(b, r) for b, r in pairs if b != r]
    if not moved:
        return None
    return "; ".join(f"baseline on {b}, this run on {r}" for b, r in moved)


def regress(
    run_dir: Path, baseline: Baseline, cfg: RegressConfig, allow: set[str], strict_hardware: bool = False
) -> RegressReport:
    """Every cell of the baseline against the run's cell of the same model and task. Cells measured on another
    hardware class have their timing checks skipped (quality is compared), or, ``strict_hardware``, are refused."""
    current = baseline_from_run(run_dir, baseline.name).cells
    common = set(current) & set(baseline.cells)
    if not common:
        raise HarnessError(
            f"the run {run_dir} shares no model/task cell with the baseline {baseline.name!r} "
            f"(baseline: {', '.join(sorted(baseline.cells))}; run: {', '.join(sorted(current))})",
            "compare a run of the same models and tasks, or write a new baseline with --update",
        )
    moved = other_hardware(baseline, current)
    if moved and strict_hardware:
        raise HarnessError(
            f"the run {run_dir} was measured on other hardware than the baseline {baseline.name!r} ({moved})",
            "run on the baseline's runner class, keep one baseline per runner class (--baseline), "
            "or drop --strict-hardware to compare quality only",
        )
    results, findings = [], []
    for name in sorted(baseline.cells):
        if name not in current:
            fnd = Finding(
                name, "missing", _fail_or_allowed("missing", allow), "this cell of the baseline is not in the run"
            )
            results.append(CellResult(name, status=fnd.status, findings=[fnd]))
            findings.append(fnd)
            continue
        res = compare_cell(name, baseline.cells[name], current[name], cfg, allow)
        results.append(res)
        findings += res.findings
    for name in sorted(set(current) - set(baseline.cells)):
        findings.append(Finding(name, "new", INFO, "a cell the baseline does not have (not compared)"))
    return RegressReport(results, findings, moved)


def _pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{v * 100:.1f}"


def markdown(report: RegressReport, baseline: Baseline, run_dir: Path) -> str:
    """The table and the findings, for a terminal, ``$GITHUB_STEP_SUMMARY`` or a PR comment."""
    verdict = "REGRESSION" if report.regressed else "no regression"
    lines = [
        f"## harness regress: {verdict}",
        "",
        f"Run `{run_dir}` against baseline `{baseline.name}` ({baseline.created_at}, {baseline.hardware}).",
        "",
        *(
            [
                f"**Other hardware**: {report.other_hardware}: latency and memory not compared, quality compared "
                "(keep one baseline per runner class; --strict-hardware refuses this).",
                "",
            ]
            if report.other_hardware
            else []
        ),
        "| cell | metric | n | baseline | run | run - baseline [95% CI] | McNemar p | latency ratio [95% CI] | memory ratio | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.results:
        d = r.delta
        lat = r.latency_ratio
        lines.append(
            "| "
            + " | ".join(
                [
                    r.cell,
                    r.metric,
                    str(r.n),
                    _pct(r.baseline),
                    _pct(r.run),
                    f"{d.value * 100:+.1f} [{d.low * 100:+.1f}, {d.high * 100:+.1f}]" if d else "-",
                    f"{r.p_value:.3g}" if r.p_value is not None else "-",
                    f"{lat.value:.2f} [{lat.low:.2f}, {lat.high:.2f}]" if lat else "not compared",
                    f"{r.memory_ratio:.2f}" if r.memory_ratio is not None else "not compared",
                    r.status,
                ]
            )
            + " |"
        )
    lines.append("")
    lines += [f"- {x.line()}" for x in report.findings if x.status != OK] or ["- nothing moved beyond its tolerance"]
    return "\n".join(lines) + "\n"


def load_baseline(path: Path) -> Baseline:
    if not path.is_file():
        raise HarnessError(
            f"baseline {path} does not exist",
            f"write one from a good run: harness regress RUN_DIR --baseline {path} --update",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise HarnessError(
            f"baseline {path} is not valid JSON ({exc})", "restore it from git or write it again with --update"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT or not isinstance(data.get("cells"), dict):
        raise HarnessError(
            f"{path} is not a harness baseline (format {BASELINE_FORMAT})",
            "write it with harness regress RUN_DIR --baseline FILE --update",
        )
    try:
        return Baseline.from_dict(data, str(path))
    except (MissingFieldsError, AttributeError, TypeError) as exc:
        raise HarnessError(
            f"{path} is not a harness baseline (format {BASELINE_FORMAT}): {exc}",
            "write it with harness regress RUN_DIR --baseline FILE --update",
        ) from exc


def update_baseline(run_dir: Path, path: Path) -> Baseline:
    """Write the run as the new baseline, atomically."""
    data = baseline_from_run(run_dir, path.stem)
    write_json(path, data.to_dict())
    return data
