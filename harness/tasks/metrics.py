"""Quality metrics: macro-F1 as scikit-learn computes it, ROUGE from rouge-score."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


class _CachedStemmer:
    """rouge-score's Porter stemmer, each word stemmed once (words repeat; stemming is most of ROUGE's time)."""

    def __init__(self) -> None:
        from nltk.stem import porter

        self.stem = lru_cache(maxsize=2**16)(porter.PorterStemmer().stem)


@lru_cache(maxsize=1)
def _stemmer() -> _CachedStemmer:
    return _CachedStemmer()


@lru_cache(maxsize=2**16)
def _tokens(text: str) -> tuple[str, ...]:
    from rouge_score import tokenize

    return tuple(tokenize.tokenize(text, _stemmer()))


def load_rouge() -> None:
    """Import ROUGE's libraries now (about a second): before forking workers, so that each does not do it again."""
    from rouge_score import rouge_scorer, tokenize  # noqa: F401

    _stemmer()


def rouge_l(prediction: str, reference: str) -> float:
    """``rouge(prediction, [reference])["rougeL"]``, each text tokenized (and stemmed) once: the cascade compares
    every output of a model with the reference model's, and stemming is most of ROUGE's time."""
    from rouge_score.rouge_scorer import _score_lcs

    return float(_score_lcs(list(_tokens(reference)), list(_tokens(prediction))).fmeasure)


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
    gold_set = set(golds)
    present = [label for label in labels if label in gold_set]
    if not present:
        return float("nan")
    # scikit-learn's f1_score(average="macro", zero_division=0), operation for operation, without its input checks
    # (7 ms a call: 2,500 classification cells in a store of 100 models)
    tp = np.array([sum(g == p == label for g, p in zip(golds, preds)) for label in present], dtype=float)
    true_n = np.array([sum(g == label for g in golds) for label in present], dtype=float)
    pred_n = np.array([sum(p == label for p in preds) for label in present], dtype=float)
    denom = 1.0 * true_n + pred_n
    f = np.divide(2.0 * tp, denom, out=np.zeros_like(tp), where=denom != 0)
    return float(np.mean(f))


# --- key-fact recall -------------------------------------------------------
# ROUGE rewards word overlap with one reference wording; for short and
# cross-lingual summaries it misjudges (a correct paraphrase scores low, a
# fluent summary with the wrong number scores high). Key-fact recall asks
# instead: which of the facts a good summary must keep are in the output?
# No library does this matching, hence the code below.

_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
} | {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100}
_SCALES = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
# Function words carry no fact; negations and quantity words do, so they are kept.
_STOPWORDS = set(
    "a an the of to in on at for from by with and or as is are was were be been being this that these those "
    "it its their his her he she they we our you your i s about into than then there which who whom whose "
    "has have had do does did will would can could should may might also".split()
)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def fact_tokens(text: str) -> list[str]:
    """Normalized content tokens: ASCII-folded, lower-cased, numbers as digits (scales applied), stemmed."""
    import re
    import unicodedata

    from nltk.stem.porter import PorterStemmer  # ships with rouge-score

    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    ascii_text = re.sub(r"(?<=\d)[,\u202f ](?=\d{3}\b)", "", ascii_text)  # 3,000 / 3 000 -> 3000
    out: list[str] = []
    for tok in re.findall(r"\d+(?:\.\d+)?|[a-z]+", ascii_text):
        if tok in _NUMBER_WORDS:
            tok = str(_NUMBER_WORDS[tok])
        if tok in _SCALES and out and out[-1].replace(".", "", 1).isdigit():
            out[-1] = _number_text(float(out[-1]) * _SCALES[tok])
            continue
        out.append(tok)
    stem = PorterStemmer().stem
    return [t if t[0].isdigit() else stem(t) for t in out if t not in _STOPWORDS and (len(t) > 1 or t.isdigit())]


def fact_found(fact: str, output_tokens: set[str], min_share: float = 0.5) -> bool:
    """A fact is kept when all its numbers and at least ``min_share`` of its other tokens are in the output.

    Numbers must match exactly (a summary with the wrong figure lost the fact);
    for words a share is enough, so "Altman" keeps "Sam Altman" and a
    paraphrase keeps most of a phrase-like fact.
    """
    tokens = fact_tokens(fact)
    if not tokens:
        return False
    numbers = [t for t in tokens if t[0].isdigit()]
    words = [t for t in tokens if not t[0].isdigit()]
    if any(n not in output_tokens for n in numbers):
        return False
    if not words:
        return True
    return sum(w in output_tokens for w in words) / len(words) >= min_share


def key_fact_recall(prediction: str, facts: Sequence[str], min_share: float = 0.5) -> float:
    """Share of ``facts`` present in ``prediction`` (see ``fact_found``)."""
    if not facts:
        return float("nan")
    out = set(fact_tokens(prediction))
    return sum(fact_found(f, out, min_share) for f in facts) / len(facts)
