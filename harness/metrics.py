"""Quality metrics, from well-kept libraries: scikit-learn (F1) and rouge-score (ROUGE)."""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """ROUGE-1/2/L F1 of one prediction, the best over its references (as for multi-reference sets)."""
    best = {name: 0.0 for name in ROUGE_TYPES}
    for ref in references:
        scores = _scorer().score(ref, prediction)
        for name in ROUGE_TYPES:
            best[name] = max(best[name], scores[name].fmeasure)
    return best


def accuracy(golds: Sequence[str], preds: Sequence[str]) -> float:
    return sum(g == p for g, p in zip(golds, preds)) / len(golds) if golds else float("nan")


def macro_f1(golds: Sequence[str], preds: Sequence[str], labels: Sequence[str]) -> float:
    """Macro-F1 over the labels present in the gold set (a label never gold has no recall)."""
    from sklearn.metrics import f1_score

    present = [label for label in labels if label in set(golds)]
    return float(f1_score(list(golds), list(preds), labels=present, average="macro", zero_division=0))
