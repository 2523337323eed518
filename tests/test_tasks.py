"""Task files: the shipped ones load, the seed items rest on the article text, bad files fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, SEEDS_DIR

from harness.errors import TaskFileError
from harness.tasks.local import available_tasks, find_task, load_spec, load_task
from harness.tasks.types import select_samples

TASKS_DIR = PROJECT_ROOT / "tasks"


def paragraphs(seed_file: str) -> list[str]:
    text = (SEEDS_DIR / seed_file).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_every_shipped_task_loads():
    tasks = available_tasks(TASKS_DIR)
    assert {"seed_claims", "seed_summary_paragraph", "smoke_classify", "smoke_summarize"} <= set(tasks)
    for name, path in tasks.items():
        if (
            load_spec(path).package is not None
        ):  # data in a wheel: the specs here, one real fetch in test_packaged_tasks
            assert load_spec(path).name == name and len(load_spec(path).package.sha256) == 64
            continue
        task = load_task(path)
        assert task.name == name and task.samples


@pytest.mark.parametrize(
    "name", ["seed_claims", "seed_summary_paragraph", "seed_attribution", "seed_stance", "seed_summary_article"]
)
def test_seed_items_rest_on_the_article_text(name):
    if not SEEDS_DIR.is_dir():
        pytest.fail(f"the seed articles are expected at {SEEDS_DIR}")
    task = load_task(find_task(name, TASKS_DIR))
    items = task.samples + task.fewshot
    assert len(task.samples) >= (5 if name == "seed_summary_article" else 20)
    for s in items:
        f = s.fields
        paras = paragraphs(f["seed_file"])
        if f.get("paragraph") is None:  # whole-article items: every line is a paragraph
            assert all(line in paras for line in f["evidence"].split("\n")), s.id
        else:
            assert f["evidence"] in paras[f["paragraph"]], (
                f"{s.id}: evidence not verbatim in {f['seed_file']} paragraph {f['paragraph']}"
            )
        if task.type.value == "classification":
            assert s.target in task.spec.labels
        assert f["lang"] in {"fr", "es", "ja"}


def test_seed_claims_label_balance():
    task = load_task(find_task("seed_claims", TASKS_DIR))
    counts = {label: sum(s.target == label for s in task.samples) for label in task.spec.labels}
    assert all(c >= 20 for c in counts.values()), counts


def test_unknown_task_lists_valid_names():
    with pytest.raises(TaskFileError, match="unknown task 'nope'.*seed_claims"):
        find_task("nope", TASKS_DIR)


def _write_task(tmp_path: Path, yaml_text: str, rows: list[str] | None = None) -> Path:
    (tmp_path / "data.jsonl").write_text(
        "\n".join(rows or ['{"id": "1", "text": "hi", "label": "pos"}', '{"id": "2", "text": "ho", "label": "neg"}'])
        + "\n"
    )
    path = tmp_path / "t.yaml"
    path.write_text(yaml_text)
    return path


GOOD = "name: t\ntype: classification\ndata: data.jsonl\nprompt: 'Q: {text}\\nA:'\nlabels: {pos: positive, neg: negative}\n"


def test_user_task_loads(tmp_path):
    task = load_task(_write_task(tmp_path, GOOD))
    assert [s.id for s in task.samples] == ["1", "2"] and task.samples[0].target == "pos"


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = _write_task(tmp_path, GOOD + "labels: [unclosed\n")
    with pytest.raises(TaskFileError, match=r"t\.yaml:\d+: not valid YAML"):
        load_task(path)


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(TaskFileError, match="promt"):
        load_task(_write_task(tmp_path, GOOD + "promt: oops\n"))


def test_bad_json_line_names_file_and_line(tmp_path):
    path = _write_task(tmp_path, GOOD, ['{"id": "1", "text": "hi", "label": "pos"}', '{"id": "2", "text": '])
    with pytest.raises(TaskFileError, match=r"data\.jsonl:2: not valid JSON"):
        load_task(path)


def test_missing_field_and_unknown_label(tmp_path):
    path = _write_task(tmp_path, GOOD, ['{"id": "1", "label": "pos"}'])
    with pytest.raises(TaskFileError, match=r"data\.jsonl:1: missing field\(s\) \['text'\]"):
        load_task(path)
    path = _write_task(tmp_path, GOOD, ['{"id": "1", "text": "x", "label": "maybe"}'])
    with pytest.raises(TaskFileError, match=r"data\.jsonl:1: label 'maybe' is not in the label set"):
        load_task(path)


def test_missing_data_file(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(GOOD)
    with pytest.raises(TaskFileError, match="data file .*data.jsonl does not exist"):
        load_task(path)


def test_sample_selection_is_seeded_and_shared():
    task = load_task(find_task("seed_claims", TASKS_DIR))
    a = select_samples(task, 20, seed=1)
    b = select_samples(task, 20, seed=1)
    c = select_samples(task, 20, seed=2)
    assert [s.id for s in a] == [s.id for s in b] and len(a) == 20
    assert [s.id for s in a] != [s.id for s in c]
    assert len(select_samples(task, None, seed=1)) == len(task.samples)
