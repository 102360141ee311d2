"""Reward functions: pure `f(completions, **columns) -> list[float]`, open-r1 style, and their registry.

`completions` are the generated texts (what follows the `<think>\\n` generation prompt: reasoning,
`</think>`, answer; the stop token excluded). `columns` are the prompt items' fields, one entry per
completion: `answer` (option text or number string), `choices` (list or None), and anything else a reward
wants (`task`, …); rewards ignore columns they do not use.

Answer matching is the evaluation harness's own (`audior1.eval`): the answer is the text after the first
`</think>` (`chat.split_reasoning`, the rule the engine and server use; no `</think>` → no answer → wrong),
scored with the synthetic benchmark's "exact" rule (the option named by its text or letter must be the
reference option; numbers are normalised). Training and evaluation therefore can never disagree about what
is correct.

The paper's rewards: audio `0.8·correct + 0.2·format`, where format = "reasoning present" (exactly one
`</think>`, with non-blank text before it); text `correct`. Without the format term reasoning collapses (paper §4).
"""

from __future__ import annotations

from typing import Callable

from audior1.chat import split_reasoning
from audior1.eval.benchmarks.synthetic import is_correct

RewardFn = Callable[..., list[float]]


def has_reasoning(completion: str) -> bool:
    """A well-formed, non-empty think block: exactly one `</think>`, with non-blank reasoning before it (a run
    of stray `</think>` tags is not reasoning). `chat.split_reasoning` says what the reasoning is."""
    split = split_reasoning(completion)
    return split.closings == 1 and bool(split.reasoning)


def correct(completions: list[str], answer: list[str], choices: list | None = None, **_) -> list[float]:
    """1.0 when the post-think answer matches the reference (MCQ option or number), else 0.0."""
    choices = choices if choices is not None else [None] * len(completions)
    return [float(is_correct(c, a, ch)) for c, a, ch in zip(completions, answer, choices)]


def format_reward(completions: list[str], **_) -> list[float]:
    """1.0 when reasoning is present: one closed think block holding non-blank text."""
    return [float(has_reasoning(c)) for c in completions]


def audio_reward(completions: list[str], **columns) -> list[float]:
    """The paper's multimodal reward: 0.8·correct + 0.2·format."""
    return [0.8 * c + 0.2 * f for c, f in zip(correct(completions, **columns), format_reward(completions))]


def text_reward(completions: list[str], **columns) -> list[float]:
    """The paper's text reward: correctness only."""
    return correct(completions, **columns)


def accuracy_reward(completions: list[str], **columns) -> list[float]:
    """Ablation: correctness only, no format term (the paper reports reasoning collapses without it)."""
    return correct(completions, **columns)


def audio_format_if_correct(completions: list[str], **columns) -> list[float]:
    """Ablation: 0.8·correct + 0.2·format·correct — reasoning is paid only when it ends in the right answer,
    so a wrong answer reached by reasoning never outscores a right one given directly."""
    return [0.8 * c + 0.2 * f * c for c, f in zip(correct(completions, **columns), format_reward(completions))]


REWARDS: dict[str, RewardFn] = {
    "correct": correct,
    "format": format_reward,
    "audio": audio_reward,
    "text": text_reward,
    "accuracy": accuracy_reward,
    "audio_format_if_correct": audio_format_if_correct,
}

# Parts logged next to every reward (their means appear as reward/<name> in the metrics).
PARTS = ("correct", "format")


def get(name: str) -> RewardFn:
    """A registered reward, or `package.module:function` for your own (imported on first use)."""
    if name in REWARDS:
        return REWARDS[name]
    if ":" in name:
        import importlib

        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise KeyError(f"reward {name!r}: cannot import it ({e})") from None
    raise KeyError(f"unknown reward {name!r}; registered: {', '.join(REWARDS)} (or give module:function)")
