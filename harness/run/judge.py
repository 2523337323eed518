"""A judge model grading a run's generations, beside ROUGE and key-fact recall (never in their place).

Each rubric of the rubric file (``configs/rubrics/default.yaml``: faithfulness, coverage, fluency) is scored on its
scale. Where the judge's engine gives log-probabilities (hf, llamacpp, vllm, a server that returns prompt
log-probabilities), the score is G-Eval's: the scale's values weighted by the judge's probability of each; otherwise
the first scale point its answer states, and an answer that states none is counted as unparseable, never dropped.
Pairwise, the judge reads each candidate's summary and the reference model's in both orders; a preference counts
only where the two orders agree (the share that flips with the order is the judge's position bias).

Judgments are cells of the run's store like any other: the judge model's identity, the rubrics and the judged cell's
key make the key, so they are computed once, resumed after a kill, and reused by every later ``harness judge`` and
by a run with ``judge.model=NAME`` (the same judging, inside the run, before its report).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from harness.analysis.judged import JudgeCells
from harness.config.schema import PROJECT_ROOT, JudgeConfig, ModelConfig, RuntimeConfig
from harness.engines import load_engine
from harness.engines.base import Engine
from harness.errors import HarnessError
from harness.measure.environment import EnvironmentRecord, environment_record
from harness.models.identity import model_identity
from harness.results.cells import CellKey, Store, now_iso
from harness.results.comparison import LoadedCell, load_cells, read_run
from harness.results.records import SampleRecord, write_json
from harness.serialize import Serializable
from harness.tasks.prompts import Prompt
from harness.tasks.types import TaskType, is_classification

JUDGE_VERSION = 1  # bump when a prompt's filling or a score's computation changes: judgments are then made anew


def choice_probs(logliks: Sequence[float], choices: Sequence[str]) -> dict[str, float]:
    """The judge's probability of each choice, its log-likelihoods normalised over the choices (the probability of
    answering something else is left out, as G-Eval does)."""
    lls = np.asarray(logliks, dtype=float)
    p = np.exp(lls - lls.max())
    return {c: float(x) for c, x in zip(choices, p / p.sum())}


def expected_score(probs: dict[str, float], scale: Sequence[str]) -> float:
    """G-Eval's score: the scale's values weighted by the judge's probability of each."""
    return sum(float(s) * probs[s] for s in scale)


def first_choice(answer: str, choices: Sequence[str]) -> Optional[str]:
    """The first of ``choices`` the answer states (a scale point, A or B), None where it states none."""
    found = re.search("|".join(re.escape(c) for c in sorted(choices, key=len, reverse=True)), answer)
    return found.group(0) if found else None


def fill(template: str, record: SampleRecord) -> str:
    """A rubric prompt for one judged item: its source prompt, the judged output, the reference and key facts."""
    refs = record.gold if isinstance(record.gold, list) else [record.gold]
    facts = record.metadata.get("key_facts") or []
    return template.format(
        source=record.prompt.strip(),
        summary=record.prediction.strip() or "(empty)",
        reference=str(refs[0]) if refs else "(none)",
        key_facts="\n".join(f"- {f}" for f in facts) or "(none listed)",
    )


@dataclass
class Judgment(Serializable):
    """One answer of the judge: its score (None: unparseable), how it was read, and what it read it from."""

    score: Optional[float]
    method: str  # probabilities | parsed | unparseable
    probs: dict[str, float] = field(default_factory=dict)  # per scale point (probabilities)
    answer: str = ""  # the generated answer (parsed, unparseable)


class Judge:
    """A loaded judge model answering rubric and pairwise prompts on its engine."""

    def __init__(self, engine: Engine, cfg: JudgeConfig) -> None:
        self.engine, self.cfg = engine, cfg
        try:  # a server without prompt log-probabilities cannot score the scale's points: its answer is parsed
            engine.check_task(TaskType.classification)
            self.method = "probabilities"
        except HarnessError:
            self.method = "parsed"

    def ask(self, text: str, choices: Sequence[str]) -> Judgment:
        """The judge's answer among ``choices``: probabilities over them, or the first one its answer states."""
        prompt = Prompt(text, " ", False)
        if self.method == "probabilities":
            (scored,), _ = self.engine.loglikelihood([prompt], [list(choices)])
            return Judgment(None, "probabilities", choice_probs(scored.logliks, choices))
        (gen,) = self.engine.generate_until([prompt], self.cfg.max_new_tokens, ["\n"])
        stated = first_choice(gen.text, choices)
        if stated is None:
            return Judgment(None, "unparseable", answer=gen.text)
        return Judgment(None, "parsed", {c: float(c == stated) for c in choices}, gen.text)

    def rubric(self, template: str, record: SampleRecord) -> Judgment:
        judged = self.ask(fill(template, record), self.cfg.scale)
        if judged.method == "unparseable":
            return judged
        judged.score = expected_score(judged.probs, self.cfg.scale)
        return judged

    def prefers_a(self, source: str, a: str, b: str) -> Judgment:
        """P(the judge answers A) for summaries ``a`` (shown first) and ``b``; None where it answered neither."""
        text = self.cfg.pairwise.format(source=source, a=a.strip() or "(empty)", b=b.strip() or "(empty)")
        judged = self.ask(text, ["A", "B"])
        judged.score = judged.probs["A"] if judged.method != "unparseable" else None
        return judged


def _judged_cells(run_dir: Path) -> tuple[list[LoadedCell], Optional[str], Path]:
    """The run's complete generation cells, its reference model and its store."""
    plan, refs = read_run(run_dir)
    cells, _ = load_cells(refs)
    generation = [c for c in cells if not is_classification(TaskType(c.manifest.task_info.get("type", "")))]
    if not generation:
        raise HarnessError(
            f"{run_dir} has no complete generation cell to judge",
            "run a summarization or generation task first (e.g. task=seed), then harness judge RUN_DIR --model NAME",
        )
    return generation, plan.reference, Path(plan.store)


def _record(
    task: str, judge: str, source: SampleRecord, seconds: float, scores: dict[str, float], details: dict[str, object]
) -> SampleRecord:
    return SampleRecord(
        task=task,
        model=judge,
        sample_id=source.sample_id,
        prompt="",
        gold=source.gold,
        prediction=source.prediction,
        scores=scores,
        input_tokens=0,
        output_tokens=0,
        latency_s=seconds,
        batch_size=1,
        item_s=seconds,
        batch_s=seconds,
        details=details,
        metadata={"judged_model": source.model},
    )


@dataclass
class _Judging:
    """What every judgment cell of one ``harness judge`` shares: the store, the judge, and where it runs."""

    store: Store
    judge: Judge
    environment: EnvironmentRecord
    progress: Callable[[str], None]


def _judge_cell(j: _Judging, key: CellKey, items: list[str], score_item: Callable[[str], SampleRecord]) -> None:
    """Judge the items the cell lacks (a cell of the store: resumed after a kill); its sessions keep the seconds."""
    started, t0 = now_iso(), time.perf_counter()
    with j.store.claim(key, on_wait=j.progress) as claim:
        if claim.complete:
            return
        done = set(claim.done_ids())
        todo = [i for i in items if i not in done]
        manifest = claim.begin(
            j.judge.engine.describe().to_dict(), {"type": "judgment", "sample_ids": items}, j.environment, len(items)
        )
        with claim.writer() as writer:
            for sample_id in todo:
                writer.write(score_item(sample_id))
        seconds = time.perf_counter() - t0
        session = {"started_at": started, "ended_at": now_iso(), "n": len(todo), "wall_s": seconds}
        claim.finish(manifest, session, len(items))
    j.progress(f"judged {key.task}: {len(todo)} items in {seconds:.1f} s")


@dataclass
class JudgeSetup:
    """Who judges and how: the judge's model config and runtime (its engine), the rubrics, the weights' cache, and
    whether each candidate is also compared with the reference model pairwise."""

    model: ModelConfig
    runtime: RuntimeConfig
    rubrics: JudgeConfig
    cache_dir: Path
    pairwise: bool = True


def judge_run(run_dir: Path, setup: JudgeSetup, progress: Callable[[str], None] = print) -> JudgeCells:
    """Grade every complete generation cell of ``run_dir`` with the judge; pairwise against the reference model."""
    judge_cfg, runtime, cfg, cache_dir, pairwise = (
        setup.model,
        setup.runtime,
        setup.rubrics,
        setup.cache_dir,
        setup.pairwise,
    )
    cells, reference, store_root = _judged_cells(run_dir)
    identity = model_identity(judge_cfg, cache_dir)
    engine = load_engine(judge_cfg, runtime, cache_dir)
    judge = Judge(engine, cfg)
    j = _Judging(Store(store_root), judge, environment_record(PROJECT_ROOT), progress)
    name = f"judge-{judge_cfg.name}"
    common = {"judge": identity, "version": JUDGE_VERSION, "scale": cfg.scale, "method": judge.method}
    out = JudgeCells(judge_cfg.name, judge.method)
    by_task: dict[str, dict[str, LoadedCell]] = {}
    for cell in cells:
        by_task.setdefault(cell.ref.task, {})[cell.ref.model] = cell
    for task, per_model in by_task.items():
        for model, cell in per_model.items():
            records = {r.sample_id: r for r in cell.records}
            key = CellKey(name, f"{task}.{model}", {**common, "rubrics": cfg.rubrics, "judged": cell.ref.key})

            def score(sample_id: str, records: dict[str, SampleRecord] = records, task: str = task) -> SampleRecord:
                t0 = time.perf_counter()
                answers = {r: judge.rubric(t, records[sample_id]) for r, t in cfg.rubrics.items()}
                scores = {r: a.score if a.score is not None else math.nan for r, a in answers.items()}
                return _record(
                    task,
                    name,
                    records[sample_id],
                    time.perf_counter() - t0,
                    scores,
                    {"judgments": {r: a.to_dict() for r, a in answers.items()}},
                )

            _judge_cell(j, key, list(records), score)
            out.rubric_cells.setdefault(task, {})[model] = str(j.store.cell_dir(key))
        ref_cell = per_model.get(reference or "")
        if not (pairwise and cfg.pairwise and ref_cell is not None):
            continue
        for model, cell in per_model.items():
            if model == reference:
                continue
            out.pairwise_cells.setdefault(task, {})[model] = _pairwise(j, name, common, task, cell, ref_cell)
    engine.unload()
    return out


def _pairwise(
    j: _Judging, name: str, common: dict[str, object], task: str, cell: LoadedCell, ref_cell: LoadedCell
) -> str:
    """The candidate's summary against the reference model's, item by item, in both orders; the cell's directory."""
    judge = j.judge
    cand = {r.sample_id: r for r in cell.records}
    ref = {r.sample_id: r for r in ref_cell.records}
    items = [i for i in cand if i in ref]
    judged = [cell.ref.key, ref_cell.ref.key]
    key = CellKey(
        name,
        f"{task}.{cell.ref.model}~{ref_cell.ref.model}",
        {**common, "pairwise": judge.cfg.pairwise, "judged": judged},
    )

    def score(sample_id: str) -> SampleRecord:
        t0 = time.perf_counter()
        c, r = cand[sample_id], ref[sample_id]
        first = judge.prefers_a(c.prompt.strip(), c.prediction, r.prediction)  # the candidate shown first
        second = judge.prefers_a(c.prompt.strip(), r.prediction, c.prediction)  # the reference shown first
        a, b = first.score, (1.0 - second.score) if second.score is not None else None
        scores = {"candidate_first": _or_nan(a), "candidate_second": _or_nan(b)}
        return _record(
            task,
            name,
            c,
            time.perf_counter() - t0,
            scores,
            {"judgments": {"first": first.to_dict(), "second": second.to_dict()}},
        )

    _judge_cell(j, key, items, score)
    return str(j.store.cell_dir(key))


def _or_nan(value: Optional[float]) -> float:
    return math.nan if value is None else value


def judge_into(run_dir: Path, setup: JudgeSetup, command: str, progress: Callable[[str], None] = print) -> Path:
    """Judge ``run_dir`` into judgment cells and write judge.json (them and ``command``); its path.

    The report (``build_report``, or ``write_judged`` for a run without one) derives judge_summary.json and judge.md
    from it, and puts the judged differences beside ROUGE-L's in the claims, the decision table and the study."""
    cells = judge_run(run_dir, setup, progress)
    cells.command = command
    out = run_dir / JudgeCells.where
    write_json(out, cells.to_dict())
    return out
