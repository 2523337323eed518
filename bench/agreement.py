"""Agreement of two runs of the same models on the same items, e.g. the hf engine (float32) against llamacpp.

    python bench/agreement.py RUN_A RUN_B [--out results/bench/agreement.json]

RUN_A and RUN_B are run directories (``hydra.run.dir``) of the same comparison and tasks, made with
different settings, e.g.:

    harness models=[smollm2_135m,qwen25_coder_15b] task=seed_core runtime.max_samples=null \
        runtime.engine=hf runtime.dtype=float32 hydra.run.dir=results/agree-hf
    harness models=[smollm2_135m,qwen25_coder_15b] task=seed_core runtime.max_samples=null \
        runtime.engine=llamacpp hydra.run.dir=results/agree-llamacpp

For every model and task, over the items both runs scored: how often the prediction (label, or
generated text) is the same, the paired difference of the primary score B - A with a paired
bootstrap 95% CI (``harness.analysis.stats.paired_difference``), and for classification McNemar's exact test
on correctness. Reads the records on disk; runs no model.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import _common as C

from harness.analysis.stats import mcnemar_exact, paired_difference
from harness.results.cells import read_cell_records
from harness.results.comparison import read_run

PRIMARY_SCORE = ("correct", "rougeL")  # the first of these a record's scores hold


def _records(run: Path) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    _, refs = read_run(run)
    return {(r.model, r.task): {rec["sample_id"]: rec for rec in read_cell_records(Path(r.path))} for r in refs}


def _score(rec: dict[str, Any]) -> tuple[str, float]:
    scores = rec.get("scores") or {}
    name = next(k for k in PRIMARY_SCORE if k in scores)
    return name, float(scores[name])


def compare(run_a: Path, run_b: Path) -> list[dict[str, Any]]:
    a, b = _records(run_a), _records(run_b)
    rows = []
    for key in sorted(set(a) & set(b)):
        ids = [i for i in a[key] if i in b[key]]
        if not ids:
            continue
        ra, rb = [a[key][i] for i in ids], [b[key][i] for i in ids]
        metric = _score(ra[0])[0]
        sa, sb = [_score(r)[1] for r in ra], [_score(r)[1] for r in rb]
        same = sum(x.get("prediction") == y.get("prediction") for x, y in zip(ra, rb))
        diff = paired_difference(sb, sa)
        row = {
            "model": key[0],
            "task": key[1],
            "n": len(ids),
            "metric": metric,
            "same_prediction": same,
            "agreement": same / len(ids),
            "score_a": sum(sa) / len(sa),
            "score_b": sum(sb) / len(sb),
            "b_minus_a": diff.to_dict(),
        }
        if metric == "correct":
            test = mcnemar_exact([bool(x) for x in sb], [bool(x) for x in sa])
            row["mcnemar"] = {"b_only": test.small_only, "a_only": test.large_only, "p_value": test.p_value}
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows = compare(args.run_a, args.run_b)
    path = C.write_result("agreement", {"run_a": str(args.run_a), "run_b": str(args.run_b), "rows": rows}, args.out)
    header = ["model", "task", "n", "same prediction", "metric", "A", "B", "B - A [95% CI]", "McNemar p"]
    table = []
    for r in rows:
        d, scale = r["b_minus_a"], 100.0
        table.append(
            [
                r["model"],
                r["task"],
                r["n"],
                f"{r['same_prediction']}/{r['n']} ({r['agreement']:.0%})",
                r["metric"],
                f"{r['score_a'] * scale:.1f}",
                f"{r['score_b'] * scale:.1f}",
                f"{d['value'] * scale:+.1f} [{d['low'] * scale:+.1f}, {d['high'] * scale:+.1f}]",
                f"{r['mcnemar']['p_value']:.2f}" if "mcnemar" in r else "-",
            ]
        )
    print(f"A = {args.run_a}, B = {args.run_b}; written to {path}")
    print(C.table(header, table))


if __name__ == "__main__":
    main()
