"""``samples.html``: every item of every task, every model side by side, to read where the small model fails.

One self-contained file, opened from ``file://`` with no network: the records are
embedded as compact JSON (one array per field, prompts once per item, not once
per model) and the page is plain JavaScript of our own, no library (a table
that renders only the rows in view, filters, search, sort), so there is nothing
to vendor or keep up to date. Outcomes come from ``harness.analysis.flips``'s
rule, the same as ``harness flips`` and McNemar's discordant pairs in the
statistics table; the page shows the statistics table's counts next to its own.

The page reads the records of the cells it shows from disk (the report keeps only each cell's numbers). With
many models it holds, per task, the reference and the best few candidates by score (``report.samples_candidates``)
and names the models it leaves out, with the command that shows any other pair (``harness flips``).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from harness.analysis.flips import A_HIGHER, A_LOWER, A_RIGHT_B_WRONG, A_WRONG_B_RIGHT, BOTH_RIGHT, BOTH_WRONG, SAME
from harness.analysis.schema import RunAnalysis
from harness.results.leaderboard import best_candidates
from harness.results.records import SampleRecord
from harness.results.schema import CellSummary, RunSummary, TaskSummary
from harness.results.summary import cell_records
from harness.tasks.types import TaskType

SAMPLES_FILE = "samples.html"


def _confidence(record: SampleRecord) -> Optional[float]:
    d = record.details
    value = d.get("margin") if "margin" in d else d.get("mean_logprob")
    return float(value) if value is not None else None


def samples_shown(summary: RunSummary, candidates: int) -> dict[str, list[str]]:
    """Per task, the models a capped page holds: the reference and the best ``candidates`` others by score."""
    best = best_candidates(summary, candidates)
    ref = [summary.reference] if summary.reference else []
    return {t: [m for m in summary.order if m in ref or m in best[t]] for t in summary.tasks}


def _records_by_model(
    summary: RunSummary,
    task: str,
    models: Sequence[str],
    records: Optional[Mapping[tuple[str, str], Sequence[SampleRecord]]],
) -> dict[str, dict[str, SampleRecord]]:
    """Each shown model's records of a task by sample id, given or read from disk."""
    return {
        m: {
            r.sample_id: r
            for r in (records.get((task, m), []) if records is not None else cell_records(summary, task, m))
        }
        for m in models
    }


def _item_ids(info: TaskSummary, per_model: Mapping[str, Mapping[str, SampleRecord]]) -> list[str]:
    """The items in the task's order, then any item a model has that the plan does not name."""
    planned = [str(i) for i in info.info.get("sample_ids") or []]
    seen = set(planned)
    return planned + [i for rs in per_model.values() for i in rs if i not in seen and not seen.add(i)]  # type: ignore[func-returns-value]


def _model_column(
    rs: Mapping[str, SampleRecord], ids: Sequence[str], key: str, result: Optional[CellSummary]
) -> dict[str, Any]:
    """One model's arrays for a task, one entry per item, so the page stores each field once."""
    rows = [rs.get(i) for i in ids]
    return {
        "p": [r.prediction if r else None for r in rows],
        "s": [float(r.scores.get(key, 0.0)) if r else None for r in rows],
        "c": [_confidence(r) if r else None for r in rows],
        "l": [r.latency_s if r and r.latency_s is not None else (r.item_s if r else None) for r in rows],
        "i": [r.input_tokens if r else None for r in rows],
        "o": [r.output_tokens if r else None for r in rows],
        "t": [1 if r and r.truncated else 0 for r in rows],
        "failed": list(result.cell.failed_ids) if result and result.cell else [],
        "stopped": result.cell.stopped.to_dict() if result and result.cell and result.cell.stopped else None,
        "n": len(rs),
    }


def _discordant(analysis: Optional[RunAnalysis], task: str) -> dict[str, dict[str, int]]:
    """McNemar's discordant pairs per candidate, for the page to show next to its own counts."""
    discordant = {}
    entry = analysis.tasks.get(task) if analysis else None
    for cand, cmp in (entry.comparisons if entry else {}).items():
        mc = cmp.mcnemar
        if mc is not None:
            # small_only: the candidate right and the reference wrong (McNemar's discordant pairs)
            discordant[cand] = {"cand_wrong_ref_right": mc.large_only, "cand_right_ref_wrong": mc.small_only}
    return discordant


def _task_data(
    summary: RunSummary,
    task: str,
    info: TaskSummary,
    records: Optional[Mapping[tuple[str, str], Sequence[SampleRecord]]],
    analysis: Optional[RunAnalysis],
    shown: Optional[Mapping[str, Sequence[str]]],
) -> dict[str, Any]:
    """One task's entry on the page: its items, each shown model's columns and the statistics' counts."""
    models = list(summary.order) if shown is None else [m for m in summary.order if m in shown.get(task, ())]
    per_model = _records_by_model(summary, task, models, records)
    ids = _item_ids(info, per_model)
    any_record = {i: next((rs[i] for rs in per_model.values() if i in rs), None) for i in ids}
    key = TaskType(info.type).item_score
    columns = {m: _model_column(rs, ids, key, info.results.get(m)) for m, rs in per_model.items()}
    entry_data: dict[str, Any] = {
        "name": task,
        "type": info.type,
        "metric": key,
        "ids": ids,
        "prompt": [r.prompt if r else "" for r in (any_record[i] for i in ids)],
        "gold": [r.gold if r else None for r in (any_record[i] for i in ids)],
        "models": columns,
        "mcnemar": _discordant(analysis, task),
    }
    if shown is not None:
        entry_data["shown"] = models
        entry_data["left_out"] = [m for m in summary.order if m in info.results and m not in models]
    return entry_data


def _cap_note(summary: RunSummary, shown: Optional[Mapping[str, Sequence[str]]]) -> Optional[str]:
    """On a capped page, the note that says which models it holds and how to compare any other pair."""
    if shown is None:
        return None
    per_task = max((len(v) for v in shown.values()), default=0)
    return (
        f"With {len(summary.order)} models this page holds, per task, the reference ({summary.reference}) and the "
        f"best {max(0, per_task - 1)} candidates by score (report.samples_candidates): the model lists change with "
        "the task, and the table of counts names the models left out of each task. Any other pair, item by item: "
        "harness flips <this directory> --models A,B --task TASK"
    )


def samples_data(
    summary: RunSummary,
    records: Optional[Mapping[tuple[str, str], Sequence[SampleRecord]]] = None,
    analysis: Optional[RunAnalysis] = None,
    shown: Optional[Mapping[str, Sequence[str]]] = None,
) -> dict[str, Any]:
    """The page's data: per task, the items in the task's order and one array per field and model.

    ``records``: (task, model) -> records; None: each shown cell is read from disk. ``shown``: per task, the models
    the page holds (None: every model)."""
    tasks = [_task_data(summary, task, info, records, analysis, shown) for task, info in summary.tasks.items()]
    listed = list(summary.order) if shown is None else [m for m in summary.order if any(m in v for v in shown.values())]
    return {
        "cap": _cap_note(summary, shown),
        "title": summary.name,
        "group": summary.task_group,
        "models": listed,
        "reference": summary.reference,
        "outcomes": {
            "classification": [A_WRONG_B_RIGHT, A_RIGHT_B_WRONG, BOTH_WRONG, BOTH_RIGHT],
            "summarization": [A_LOWER, A_HIGHER, SAME],
        },
        "tasks": tasks,
    }


def render_samples(
    summary: RunSummary,
    records: Optional[Mapping[tuple[str, str], Sequence[SampleRecord]]] = None,
    analysis: Optional[RunAnalysis] = None,
    shown: Optional[Mapping[str, Sequence[str]]] = None,
) -> str:
    data = json.dumps(samples_data(summary, records, analysis, shown), ensure_ascii=False, separators=(",", ":"))
    data = data.replace("</", "<\\/")  # no "</script>" inside the data block
    title = html.escape(f"Per-sample comparison: {summary.name} on {summary.task_group}")
    return _PAGE.replace("@TITLE@", title).replace("@DATA@", data)


_PAGE = r"""<!doctype html><html><head><meta charset="utf-8"><title>@TITLE@</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'">
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1rem 1.5rem;color:#222}
h1{font-size:1.3rem;margin:.2rem 0 .6rem}a{color:#0b5cad}
#controls{display:flex;flex-wrap:wrap;gap:.6rem 1.2rem;align-items:end;font-size:.85rem;margin-bottom:.6rem}
#controls label{display:flex;flex-direction:column;gap:.15rem}select,input{font-size:.85rem;padding:.15rem .3rem}
#counts table,#detail table{border-collapse:collapse;font-size:.8rem}#counts td,#counts th,#detail td,#detail th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}
#counts th{background:#f4f4f4}.note{color:#555;font-size:.8rem;margin:.3rem 0}.warn{color:#8a4b00}
#head,.row{display:grid;grid-template-columns:7rem 9rem 1fr 3.5rem 1fr 3.5rem 4rem 4.5rem 4.5rem 5rem;gap:.4rem;align-items:center;font-size:.8rem}
#head{font-weight:600;background:#f4f4f4;padding:.3rem .4rem;border:1px solid #ddd;cursor:default}#head span[data-sort]{cursor:pointer;text-decoration:underline dotted}
#list{height:60vh;overflow:auto;border:1px solid #ddd;border-top:none;position:relative}#spacer{position:relative}
.row{position:absolute;left:0;right:0;height:34px;padding:0 .4rem;border-bottom:1px solid #eee;cursor:pointer}
.row:hover{background:#f6f9ff}.row.sel{background:#e8f0fe}.row span{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.bad{color:#b00020}.good{color:#1b7a1b}.flag{font-size:.7rem;background:#eee;border-radius:3px;padding:0 .25rem;margin-right:.15rem}
#detail{margin-top:.8rem}#detail pre{white-space:pre-wrap;font-size:.78rem;background:#fafafa;border:1px solid #eee;padding:.4rem;max-height:24rem;overflow:auto}
mark{background:#ffe08a}.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(22rem,1fr));gap:.8rem}
</style></head><body>
<h1>@TITLE@</h1>
<p class="note">Every item of every task, the models side by side. Outcome: model A against model B on each item
(classification: right or wrong; generation: the per-item score). Click a row to read it whole. <a href="report.html">Back to the report</a>.</p>
<div id="controls">
<label>task<select id="task"></select></label>
<label>model A<select id="ma"></select></label>
<label>model B<select id="mb"></select></label>
<label>outcome<select id="outcome"></select></label>
<label>flags<select id="flag"><option value="">any</option><option value="truncated">truncated prompt</option><option value="missing">missing or failed</option></select></label>
<label>search prompt and outputs<input id="q" type="search" placeholder="a word..." size="24"></label>
<label>sort<select id="sort"><option value="order">task order</option><option value="diff">score B minus A</option><option value="conf">confidence of A (lowest first)</option><option value="lat">latency of A (slowest first)</option></select></label>
</div>
<p class="note warn" id="cap"></p>
<div id="counts"></div>
<p class="note" id="shown"></p>
<div id="head"><span>item</span><span>gold</span><span>A: prediction</span><span>A</span><span>B: prediction</span><span>B</span><span data-sort="diff">B-A</span><span data-sort="conf">conf A</span><span data-sort="lat">latency A</span><span>flags</span></div>
<div id="list"><div id="spacer"></div></div>
<div id="detail"></div>
<script id="data" type="application/json">@DATA@</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const ROW = 34, $ = (id) => document.getElementById(id);
const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;","\"":"&quot;","'":"&#39;"}[c]));
const goldText = (g) => Array.isArray(g) ? g.join(" | ") : (g == null ? "" : String(g));
const fmt = (v, d) => v == null ? "-" : Number(v).toFixed(d);
let state = {task: 0, a: null, b: null, outcome: "", flag: "", q: "", sort: "order", sel: null};
let rows = [], haystack = {};
const NAMES = {"a wrong, b right": "A wrong, B right", "a right, b wrong": "A right, B wrong", "both wrong": "both wrong",
  "both right": "both right (agree)", "a lower": "A scores lower", "a higher": "A scores higher", "same score": "same score"};

function outcome(type, sa, sb) {
  if (sa == null || sb == null) return null;
  if (type === "classification") {
    const a = sa > 0, b = sb > 0;
    return a && b ? "both right" : !a && !b ? "both wrong" : a ? "a right, b wrong" : "a wrong, b right";
  }
  return sa < sb ? "a lower" : sa > sb ? "a higher" : "same score";
}
const shownIn = (T) => T.shown || D.models;  // a capped page holds a few models per task
function pairDefault(T) {
  const ms = shownIn(T), ref = ms.includes(D.reference) ? D.reference : ms[ms.length - 1];
  const cand = ms.find((m) => m !== ref) || ref;
  return [cand, ref];
}
function fillModels() {
  const ms = shownIn(D.tasks[state.task]);
  if (!ms.includes(state.a) || !ms.includes(state.b)) [state.a, state.b] = pairDefault(D.tasks[state.task]);
  const labels = ms.map((m) => m + (m === D.reference ? " (reference)" : ""));
  fillSelect($("ma"), ms, labels, state.a);
  fillSelect($("mb"), ms, labels, state.b);
}
function fillSelect(el, values, labels, value) {
  el.innerHTML = values.map((v, i) => `<option value="${esc(v)}"${v === value ? " selected" : ""}>${esc(labels ? labels[i] : v)}</option>`).join("");
}
function setup() {
  const fromHash = new URLSearchParams(location.hash.slice(1));
  const t = D.tasks.findIndex((x) => x.name === fromHash.get("task"));
  state.task = t >= 0 ? t : 0;
  [state.a, state.b] = pairDefault(D.tasks[state.task]);
  fillSelect($("task"), D.tasks.map((_, i) => String(i)), D.tasks.map((x) => `${x.name} (${x.ids.length} items)`), String(state.task));
  fillModels();
  $("cap").textContent = D.cap || "";
  $("task").onchange = (e) => { state.task = +e.target.value; state.sel = null; fillModels(); fillOutcomes(); update(); };
  $("ma").onchange = (e) => { state.a = e.target.value; update(); };
  $("mb").onchange = (e) => { state.b = e.target.value; update(); };
  $("outcome").onchange = (e) => { state.outcome = e.target.value; update(); };
  $("flag").onchange = (e) => { state.flag = e.target.value; update(); };
  $("sort").onchange = (e) => { state.sort = e.target.value; update(); };
  let timer = null;
  $("q").oninput = (e) => { clearTimeout(timer); timer = setTimeout(() => { state.q = e.target.value.trim().toLowerCase(); update(); }, 120); };
  document.querySelectorAll("#head span[data-sort]").forEach((el) => el.onclick = () => { state.sort = el.dataset.sort; $("sort").value = state.sort; update(); });
  $("list").onscroll = draw;
  fillOutcomes();
  update();
}
function fillOutcomes() {
  const T = D.tasks[state.task];
  const kinds = D.outcomes[T.type] || [];
  fillSelect($("outcome"), [""].concat(kinds), ["any"].concat(kinds.map((k) => NAMES[k])), state.outcome);
  if (!kinds.includes(state.outcome)) state.outcome = "";
}
function hay(T, i) {
  const key = T.name + "\u0000" + i;
  if (!(key in haystack)) {
    let s = T.prompt[i] + "\n" + goldText(T.gold[i]);
    for (const m of shownIn(T)) s += "\n" + (T.models[m].p[i] || "");
    haystack[key] = s.toLowerCase();
  }
  return haystack[key];
}
function counts() {
  const parts = [];
  for (const T of D.tasks) {
    const A = T.models[state.a], B = T.models[state.b];
    if (!A || !B) {
      parts.push(`<tr data-task="${esc(T.name)}"><td>${esc(T.name)}</td><td>-</td><td>A or B is not on this page for this task</td><td></td>` +
        `<td class="warn">left out: ${esc((T.left_out || []).length)} models</td></tr>`);
      continue;
    }
    const c = {}; let both = 0;
    for (let i = 0; i < T.ids.length; i++) {
      const o = outcome(T.type, A.s[i], B.s[i]);
      if (o) { c[o] = (c[o] || 0) + 1; both++; }
    }
    const kinds = D.outcomes[T.type] || [];
    let stat = "";
    const ref = D.reference;
    if (T.type === "classification" && ref && (state.a === ref || state.b === ref) && state.a !== state.b) {
      const cand = state.a === ref ? state.b : state.a, m = T.mcnemar[cand];
      if (m) stat = state.a === cand ? `${m.cand_wrong_ref_right} / ${m.cand_right_ref_wrong}`
                                     : `${m.cand_right_ref_wrong} / ${m.cand_wrong_ref_right}`;
    }
    const ms = shownIn(T);
    const missing = ms.filter((m) => T.models[m].n < T.ids.length).map((m) => `${m}: ${T.ids.length - T.models[m].n} missing`);
    const failed = ms.filter((m) => T.models[m].failed.length).map((m) => `${m}: ${T.models[m].failed.length} failed`);
    const stopped = ms.filter((m) => T.models[m].stopped).map((m) => `${m} stopped when decided at ${T.models[m].stopped.at}`);
    if (T.left_out && T.left_out.length) missing.push(`left out of this page: ${T.left_out.join(", ")}`);
    parts.push(`<tr data-task="${esc(T.name)}"><td>${esc(T.name)}</td><td>${both}</td><td>` +
      kinds.map((k) => `${esc(NAMES[k])}: <b class="count" data-kind="${esc(k)}">${c[k] || 0}</b>`).join(" &middot; ") +
      `</td><td>${esc(stat)}</td><td class="warn">${esc(missing.concat(failed, stopped).join("; "))}</td></tr>`);
  }
  const warn = state.a === state.b ? "<p class='note warn'>Model A and model B are the same model: pick two to compare.</p>" : "";
  const one = D.models.length < 2 ? "<p class='note warn'>This run has one model: outcomes need two.</p>" : "";
  $("counts").innerHTML = one + warn + `<table><thead><tr><th>task</th><th>items with both</th><th>outcomes, model A against model B</th><th>discordant pairs in the statistics table (A wrong, B right / A right, B wrong)</th><th>not run</th></tr></thead><tbody>${parts.join("")}</tbody></table>`;
}
function update() {
  const T = D.tasks[state.task], A = T.models[state.a], B = T.models[state.b];
  const failedA = new Set(A.failed), failedB = new Set(B.failed);
  rows = [];
  for (let i = 0; i < T.ids.length; i++) {
    if (state.outcome && outcome(T.type, A.s[i], B.s[i]) !== state.outcome) continue;
    if (state.flag === "truncated" && !(A.t[i] || B.t[i])) continue;
    if (state.flag === "missing" && !(A.s[i] == null || B.s[i] == null || failedA.has(T.ids[i]) || failedB.has(T.ids[i]))) continue;
    if (state.q && !hay(T, i).includes(state.q)) continue;
    rows.push(i);
  }
  const by = {diff: (i) => -((B.s[i] ?? 0) - (A.s[i] ?? 0)), conf: (i) => A.c[i] ?? Infinity, lat: (i) => -(A.l[i] ?? 0)}[state.sort];
  if (by) rows.sort((x, y) => by(x) - by(y) || x - y);
  $("shown").textContent = `${rows.length} of ${T.ids.length} items shown`;
  $("spacer").style.height = rows.length * ROW + "px";
  $("list").style.height = Math.max(ROW * 3, Math.min(rows.length * ROW + 2, window.innerHeight * 0.6)) + "px";
  counts();
  draw();
}
function cls(type, s) { return s == null ? "" : (type === "classification" ? (s > 0 ? "good" : "bad") : ""); }
function draw() {
  const T = D.tasks[state.task], A = T.models[state.a], B = T.models[state.b];
  const list = $("list"), first = Math.max(0, Math.floor(list.scrollTop / ROW) - 5);
  const last = Math.min(rows.length, first + Math.ceil(list.clientHeight / ROW) + 10);
  const out = [];
  for (let k = first; k < last; k++) {
    const i = rows[k], flags = [];
    if (A.t[i] || B.t[i]) flags.push("truncated");
    if (A.s[i] == null || B.s[i] == null) flags.push("missing");
    if (A.failed.includes(T.ids[i]) || B.failed.includes(T.ids[i])) flags.push("failed");
    const d = A.s[i] == null || B.s[i] == null ? null : B.s[i] - A.s[i];
    out.push(`<div class="row${state.sel === i ? " sel" : ""}" data-i="${i}" style="top:${k * ROW}px">` +
      `<span title="${esc(T.ids[i])}">${esc(T.ids[i])}</span><span title="${esc(goldText(T.gold[i]))}">${esc(goldText(T.gold[i]))}</span>` +
      `<span class="${cls(T.type, A.s[i])}">${esc(A.p[i] ?? "(no record)")}</span><span>${fmt(A.s[i], 2)}</span>` +
      `<span class="${cls(T.type, B.s[i])}">${esc(B.p[i] ?? "(no record)")}</span><span>${fmt(B.s[i], 2)}</span>` +
      `<span>${d == null ? "-" : (d > 0 ? "+" : "") + d.toFixed(2)}</span><span>${fmt(A.c[i], 3)}</span>` +
      `<span>${A.l[i] == null ? "-" : (A.l[i] * 1000).toFixed(0) + " ms"}</span><span>${flags.map((f) => `<span class="flag">${f}</span>`).join("")}</span></div>`);
  }
  $("spacer").innerHTML = out.join("");
  $("spacer").querySelectorAll(".row").forEach((el) => el.onclick = () => open(+el.dataset.i));
}
function words(s) { return new Set((String(s).toLowerCase().match(/[\p{L}\p{N}]+/gu) || [])); }
function highlight(text, ref) {
  const refWords = words(ref);
  return esc(text).replace(/[\p{L}\p{N}]+/gu, (w) => refWords.has(w.toLowerCase()) ? w : `<mark>${w}</mark>`);
}
function open(i) {
  state.sel = i;
  const T = D.tasks[state.task], gen = T.type !== "classification", ref = goldText(T.gold[i]);
  const cols = shownIn(T).map((m) => {
    const M = T.models[m];
    const text = M.p[i] == null ? "(no record: not run, failed or stopped before this item)" : M.p[i];
    return `<div><h3>${esc(m)}${m === D.reference ? " (reference)" : ""}</h3><pre>${gen && M.p[i] != null ? highlight(text, ref) : esc(text)}</pre>` +
      `<table><tr><th>score</th><td>${fmt(M.s[i], 3)}</td></tr><tr><th>confidence</th><td>${fmt(M.c[i], 3)}</td></tr>` +
      `<tr><th>latency</th><td>${M.l[i] == null ? "-" : (M.l[i] * 1000).toFixed(0) + " ms"}</td></tr><tr><th>tokens in / out</th><td>${M.i[i] ?? "-"} / ${M.o[i] ?? "-"}</td></tr>` +
      `<tr><th>prompt truncated</th><td>${M.t[i] ? "yes" : "no"}</td></tr></table></div>`;
  }).join("");
  $("detail").innerHTML = `<h2>${esc(T.name)} / ${esc(T.ids[i])}</h2>` +
    `<details><summary>prompt (${T.prompt[i].length} characters)</summary><pre>${esc(T.prompt[i])}</pre></details>` +
    `<p><b>${gen ? "reference" : "gold"}:</b> ${esc(ref)}</p>` +
    (gen ? "<p class='note'>Highlighted: words of an output that the reference lacks.</p>" : "") + `<div class="cols">${cols}</div>`;
  draw();
}
setup();
</script></body></html>
"""
