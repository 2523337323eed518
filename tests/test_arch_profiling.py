"""Architecture-only profiling: random weights at a published size give latency and memory, never a quality claim.

The published-size configs (OLMoE-1B-7B, OLMo-2-7B/13B) are checked by building them on the meta device
(no memory); the run itself goes through the same code path scaled down (comparison=arch_tiny).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


@pytest.mark.parametrize(
    "name, total_b, active_b",
    [("olmoe_1b_7b_arch", 6.92, 1.28), ("olmo2_7b_arch", 7.30, 7.30), ("olmo2_13b_arch", 13.72, 13.72)],
)
def test_published_sizes(name, total_b, active_b):
    import transformers
    from omegaconf import OmegaConf

    from harness.config.schema import load_model_config
    from harness.models.params import count_params

    cfg = load_model_config(name)
    assert cfg.architecture_only and cfg.source == "random"
    config = getattr(transformers, cfg.random.config_class)(
        **OmegaConf.to_container(OmegaConf.create(cfg.random.config))
    )
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    counts = count_params(model)
    assert counts.total / 1e9 == pytest.approx(total_b, rel=0.01)
    assert counts.active / 1e9 == pytest.approx(active_b, rel=0.02)


def test_architecture_only_run_reports_cost_not_quality(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HARNESS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "comparison=arch_tiny",
            "task=smoke",
            "runtime=regression",
            "runtime.max_samples=3",
            "runtime.progress=false",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "not measured (random weights)" in report and "tiny_olmoe_arch (architecture only)" in report
    verdicts = {v["id"]: v for v in json.loads((tmp_path / "run" / "claims.json").read_text())["verdicts"]}
    for cid in ("C2", "C3", "C4", "C9"):  # quality claims rest on no architecture-only model
        assert verdicts[cid]["verdict"] == "not measured" or not verdicts[cid]["tasks"], (cid, verdicts[cid])
    assert "MoE/dense latency" in verdicts["C7"]["key_number"] and "active params" in verdicts["C7"]["key_number"]
    assert verdicts["C5"]["verdict"] != "not measured"  # latency and memory are real
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["runtime"]["deterministic"] and config["runtime"]["dtype"] == "float32"
    assert config["runtime"]["fixed_generation_length"]  # set by comparison=arch_tiny
    cells = json.loads((tmp_path / "run" / "cells.json").read_text())["cells"]
    for cell in cells:
        if cell["task"] == "smoke_summarize":  # every model generated exactly max_new_tokens: timed on equal work
            manifest = json.loads((Path(cell["path"]) / "manifest.json").read_text())
            recs = [json.loads(x) for x in (Path(cell["path"]) / "records.jsonl").read_text().splitlines()]
            assert {r["output_tokens"] for r in recs} == {manifest["parts"]["generation"]["max_new_tokens"]}
            assert manifest["parts"]["generation"]["fixed_length"] is True
