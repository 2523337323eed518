"""User task files over CSV/TSV data: columns by header, no Python, clear errors naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

from harness.errors import TaskFileError
from harness.tasks.local import load_task
from harness.tasks.types import TaskType

CLASSIFY = """name: reviews
type: classification
data: data.csv
prompt: "Review: {text}\\nSentiment:"
label_field: sentiment
labels: {pos: positive, neg: negative}
"""

SUMMARIZE = """name: notes
type: summarization
data: data.tsv
prompt: "Note: {note}\\nSummary:"
reference_fields: [summary, summary_2]
"""


def write(tmp_path: Path, yaml_text: str, data: str, data_name: str = "data.csv", encoding: str = "utf-8") -> Path:
    (tmp_path / data_name).write_text(data, encoding=encoding)
    path = tmp_path / "task.yaml"
    path.write_text(yaml_text)
    return path


def test_csv_classification_task(tmp_path):
    data = (
        "id,text,sentiment,split\n"
        'r1,"Great, and quiet",pos,test\n'
        "r2,Broke on day one,neg,test\n"
        "\n"
        'r3,"A long one\nover two lines",neg,test\n'
        "f1,Lovely,pos,fewshot\n"
    )
    task = load_task(write(tmp_path, CLASSIFY, data, encoding="utf-8-sig"))  # a spreadsheet's BOM is ignored
    assert [s.id for s in task.samples] == ["r1", "r2", "r3"] and [s.id for s in task.fewshot] == ["f1"]
    assert task.samples[0].fields["text"] == "Great, and quiet" and task.samples[0].target == "pos"
    assert task.samples[2].fields["text"] == "A long one\nover two lines"
    assert [s.line for s in task.samples] == [2, 3, 6]


def test_csv_without_id_or_split_columns(tmp_path):
    task = load_task(write(tmp_path, CLASSIFY, "text,sentiment\nfine,pos\nbad,neg\n"))
    assert [s.id for s in task.samples] == ["line2", "line3"]


def test_tsv_summarization_task_with_two_references(tmp_path):
    data = "id\tnote\tsummary\tsummary_2\nn1\tThe council met and approved the bridge.\tBridge approved.\tCouncil says yes to bridge.\nn2\tRain closed the road.\tRoad closed.\t\n"
    task = load_task(write(tmp_path, SUMMARIZE, data, "data.tsv"))
    assert task.type is TaskType.summarization
    assert task.samples[0].target == ["Bridge approved.", "Council says yes to bridge."] and task.samples[1].target == [
        "Road closed."
    ]


def test_row_with_a_missing_column_names_file_and_line(tmp_path):
    path = write(tmp_path, CLASSIFY, "id,text,sentiment\nr1,fine,pos\nr2,no label here\n")
    with pytest.raises(TaskFileError, match=r"data\.csv:3: missing column\(s\) \['sentiment'\]"):
        load_task(path)


def test_row_with_too_many_cells_names_file_and_line(tmp_path):
    path = write(tmp_path, CLASSIFY, "id,text,sentiment\nr1,fine,pos\nr2,unquoted, comma,neg\n")
    with pytest.raises(TaskFileError, match=r"data\.csv:3: 4 cells but the header has 3 columns.*quote cells"):
        load_task(path)


def test_unknown_label_and_missing_prompt_column(tmp_path):
    with pytest.raises(TaskFileError, match=r"data\.csv:2: label 'meh' is not in the label set"):
        load_task(write(tmp_path, CLASSIFY, "id,text,sentiment\nr1,fine,meh\n"))
    with pytest.raises(TaskFileError, match=r"data\.csv:2: missing field\(s\) \['text'\]"):
        load_task(write(tmp_path, CLASSIFY, "id,review,sentiment\nr1,fine,pos\n"))


def test_bad_header_and_empty_file(tmp_path):
    with pytest.raises(TaskFileError, match=r"data\.csv:1: column names must be non-empty and unique"):
        load_task(write(tmp_path, CLASSIFY, "id,text,text\nr1,a,pos\n"))
    with pytest.raises(TaskFileError, match=r"data\.csv: empty file"):
        load_task(write(tmp_path, CLASSIFY, ""))
    with pytest.raises(TaskFileError, match=r"data\.csv: no items"):
        load_task(write(tmp_path, CLASSIFY, "id,text,sentiment\n"))


def test_not_utf8_names_the_file(tmp_path):
    (tmp_path / "data.csv").write_bytes("id,text,sentiment\nr1,caf\xe9,pos\n".encode("latin-1"))
    (tmp_path / "task.yaml").write_text(CLASSIFY)
    with pytest.raises(TaskFileError, match=r"data\.csv:\d+: not UTF-8 text"):
        load_task(tmp_path / "task.yaml")


def test_worked_example_ships_and_loads():
    task = load_task(PROJECT_ROOT / "tasks" / "examples" / "ticket_priority.yaml")
    assert task.data_path.suffix == ".csv" and len(task.samples) == 12 and len(task.fewshot) == 2
    assert {s.target for s in task.samples} == {"low", "medium", "high"}
