"""Turn a task item into the exact text a model sees (few-shot, chat template)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.tasks.types import Sample, Task, TaskType, render


@dataclass(frozen=True)
class Prompt:
    text: str  # the context, ready to tokenize (no special tokens added on top)
    target_delimiter: str  # put between the context and an answer when scoring
    chat: bool


def answer_text(task: Task, sample: Sample) -> str:
    """The gold answer as the model should write it (for few-shot examples)."""
    if task.type is TaskType.classification:
        return sample.target if sample.choices is not None else task.spec.labels[sample.target]
    return sample.target[0]


def item_text(task: Task, sample: Sample) -> str:
    """The item as asked: the task's template over its fields, or the text a source rendered for it."""
    return sample.prompt if sample.prompt is not None else render(task.spec.prompt, sample.fields)


def build_prompt(task: Task, sample: Sample, tokenizer: Any, use_chat: bool, num_fewshot: int | None = None) -> Prompt:
    """The context for ``sample``: optional system prompt, k examples, the item.

    With a chat template each example becomes a user/assistant turn and the
    answer follows the generation prompt directly (no delimiter); without one,
    examples are joined by ``fewshot_delimiter`` as lm-eval does.
    """
    spec = task.spec
    k = spec.num_fewshot if num_fewshot is None else num_fewshot
    shots = task.fewshot[:k]
    chat = use_chat and bool(getattr(tokenizer, "chat_template", None))
    if chat:
        messages: list[dict[str, str]] = []
        if spec.system_prompt:
            messages.append({"role": "system", "content": render(spec.system_prompt, sample.fields)})
        for shot in shots:
            messages.append({"role": "user", "content": item_text(task, shot)})
            messages.append({"role": "assistant", "content": answer_text(task, shot)})
        messages.append({"role": "user", "content": item_text(task, sample)})
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return Prompt(text=text, target_delimiter="", chat=True)
    parts = [render(spec.system_prompt, sample.fields)] if spec.system_prompt else []
    parts += [item_text(task, s) + spec.target_delimiter + answer_text(task, s) for s in shots]
    parts.append(item_text(task, sample))
    return Prompt(text=spec.fewshot_delimiter.join(parts), target_delimiter=spec.target_delimiter, chat=False)
