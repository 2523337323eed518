"""runtime.dtype=auto and the default threads, as functions of the hardware (a table), and on this machine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.errors import ConfigError
from harness.models.precision import (
    choose_dtype,
    cpu_capability,
    cpu_flags,
    default_threads,
    resolve_dtype_choice,
    usable_cores,
)

AVX2_EPYC = {"fpu", "sse4_2", "avx", "avx2", "fma", "f16c"}  # an AVX2-only AMD EPYC, most laptops
AVX512_NO_BF16 = AVX2_EPYC | {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"}  # Skylake/Cascade Lake servers
COOPER_LAKE = AVX512_NO_BF16 | {"avx512_bf16"}
SAPPHIRE_RAPIDS = COOPER_LAKE | {"amx_bf16", "amx_tile", "amx_int8"}
GRAVITON3 = {"fp", "asimd", "sve", "bf16", "i8mm"}  # aarch64 lists bf16: torch's CPU kernels are not measured here

TABLE = [
    # requested, device, capability, flags, cuda_bf16 -> dtype, words in the reason
    ("auto", "cpu", "AVX2", AVX2_EPYC, False, torch.float32, "no native bfloat16 on this AVX2 CPU"),
    ("auto", "cpu", "AVX512", AVX512_NO_BF16, False, torch.float32, "no native bfloat16 on this AVX512 CPU"),
    ("auto", "cpu", "AVX512", COOPER_LAKE, False, torch.bfloat16, "avx512_bf16"),
    ("auto", "cpu", "AVX512", SAPPHIRE_RAPIDS, False, torch.bfloat16, "amx_bf16, avx512_bf16"),
    ("auto", "cpu", "DEFAULT", GRAVITON3, False, torch.float32, "no native bfloat16"),
    ("auto", "cpu", "", frozenset(), False, torch.float32, "no native bfloat16 on this CPU"),
    (None, "cpu", "AVX2", AVX2_EPYC, False, torch.float32, "auto"),
    ("auto", "cuda", "AVX2", AVX2_EPYC, True, torch.bfloat16, "GPU with native bfloat16"),
    ("auto", "cuda", "AVX512", SAPPHIRE_RAPIDS, False, torch.float16, "GPU without native bfloat16"),
    (
        "bfloat16",
        "cpu",
        "AVX2",
        AVX2_EPYC,
        False,
        torch.bfloat16,
        "set in the configuration",
    ),  # explicit values are kept
    ("float32", "cuda", "AVX2", AVX2_EPYC, True, torch.float32, "set in the configuration"),
    ("float16", "cpu", "AVX512", SAPPHIRE_RAPIDS, False, torch.float16, "set in the configuration"),
]


@pytest.mark.parametrize("requested,device,capability,flags,cuda_bf16,dtype,reason", TABLE)
def test_dtype_choice_table(requested, device, capability, flags, cuda_bf16, dtype, reason):
    choice = choose_dtype(requested, device, capability=capability, flags=flags, cuda_bf16=cuda_bf16)
    assert choice.dtype == dtype
    assert reason in choice.reason


def test_unknown_dtype_is_a_config_error():
    with pytest.raises(ConfigError, match="dtype 'float8' is not supported"):
        choose_dtype("float8", "cpu")


def test_auto_on_this_machine_follows_its_flags():
    """The real machine the tests run on: bfloat16 exactly where /proc/cpuinfo names native bfloat16."""
    flags = cpu_flags()
    choice = resolve_dtype_choice("auto", torch.device("cpu"))
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    assert choice.dtype == (torch.bfloat16 if native else torch.float32), (
        cpu_capability(),
        sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}),
    )
    assert choice.reason.startswith("auto: ")


def test_cpu_flags_read_from_cpuinfo(tmp_path: Path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16\n\nprocessor\t: 1\nflags\t\t: fpu avx2 amx_bf16\n")
    assert cpu_flags(info) == {"fpu", "avx2", "amx_bf16"}
    assert cpu_flags(tmp_path / "absent") == frozenset()


@pytest.fixture(autouse=True)
def outside_slurm(monkeypatch):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)  # the suite itself may run in a SLURM job


@pytest.mark.parametrize(
    "affinity,quota,cores", [(64, 2.0, 2), (64, 1.5, 2), (64, 0.5, 1), (4, None, 4), (4, 16.0, 4), (1, None, 1)]
)
def test_usable_cores_from_affinity_and_quota(affinity, quota, cores):
    assert usable_cores(affinity=affinity, quota=quota) == cores


def test_cgroup_quota_files(tmp_path: Path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert usable_cores(affinity=8, cgroup_root=tmp_path) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(affinity=8, cgroup_root=tmp_path) == 8


def test_default_threads():
    assert default_threads(3) == 3
    assert 1 <= default_threads(None) <= (torch.get_num_threads() + 1024)
    with pytest.raises(ConfigError, match="runtime.num_threads=0 must be positive"):
        default_threads(0)


def test_usable_cores_capped_by_the_slurm_allocation(monkeypatch):
    # a cluster without CPU binding (task/none) leaves the affinity at the whole node: the job's --cpus-per-task counts
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert usable_cores(affinity=64, quota=None) == 3
    assert usable_cores(affinity=2, quota=None) == 2  # binding narrower than the allocation: the binding
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "not a number")
    assert usable_cores(affinity=64, quota=None) == 64
