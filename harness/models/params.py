"""Parameter counts: total, embedding, and active per token for mixtures of experts.

transformers reports no "active parameters", so it is computed here from the
expert tensors and the router's top-k:
``active = total - expert + expert * top_k / num_experts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from harness.serialize import Serializable

# Submodule names that hold routed experts (OLMoE/Mixtral/Qwen-MoE: "...mlp.experts...").
# Shared experts ("shared_expert") and routers ("gate") are always active.
_EXPERT_MARKER = ".experts."


@dataclass(frozen=True)
class ParamCounts(Serializable):
    total: int
    active: int  # per token; equals total for dense models
    embedding: int  # input embeddings, plus the output head when it is not tied
    expert: int  # routed-expert parameters (0 for dense models)
    num_experts: int  # 0 for dense models
    experts_per_token: int  # 0 for dense models

    derived: ClassVar[tuple[str, ...]] = ("is_moe",)

    @classmethod
    def counted(cls, total: int, embedding: int = 0, num_experts: int = 0) -> ParamCounts:
        """Counts read from a file or a server, not from module weights: every parameter counted as active."""
        return cls(total, total, embedding, 0, num_experts, 0)

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0


def _moe_shape(config: Any) -> tuple[int, int]:
    """(num_experts, experts_per_token) from a transformers config, (0, 0) if dense."""
    num = getattr(config, "num_experts", None) or getattr(config, "num_local_experts", None) or 0
    top_k = getattr(config, "num_experts_per_tok", None) or 0
    return int(num), int(top_k)


def count_params(model: Any) -> ParamCounts:  # a transformers PreTrainedModel (or any torch module)
    """Count a model's parameters once each (tied weights are one parameter)."""
    total = 0
    expert = 0
    seen: set[int] = set()
    for name, param in model.named_parameters(remove_duplicate=True):
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        if _EXPERT_MARKER in f".{name}.":
            expert += param.numel()

    embedding = 0
    inp = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if inp is not None:
        embedding += inp.weight.numel()
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if out is not None and (inp is None or out.weight is not inp.weight):
        embedding += out.weight.numel()

    num_experts, top_k = _moe_shape(getattr(model, "config", None))
    if num_experts and expert:
        active = total - expert + expert * top_k // num_experts
    else:
        num_experts, top_k, expert, active = 0, 0, 0, total
    return ParamCounts(total, active, embedding, expert, num_experts, top_k)
