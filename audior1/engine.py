"""Batched generation over the KV cache: the one decoding path for the CLI, the server, RL and eval.

Design choices
- A step-able core (`Engine.add` / `Engine.step`): new requests are prefilled together and join the running
  batch between decode steps, which is how the server batches concurrent clients; `generate()` is just
  "add everything, step until done". `step()` never raises for one request's failure: the request gets an
  `error` and is marked done, the others go on.
- Each prompt is prefilled once (audio encoder included); its `n` samples fork the prefilled cache rows
  (`KVCache.select` copies the rows, nothing is recomputed).
- Rows of different lengths live in one left-padded cache; each row keeps its own RoPE position, so a
  prompt gives the same tokens alone or inside a batch. When rows leave, leading columns that no remaining
  row uses are cut off, so a long-running server's cache does not grow without end.
- Decode steps take a lean path (`model.FastDecoder`): the same math as `model.forward` written as a flat loop
  over the live weights (no module calls, RoPE tables built once, one-query attention by grouped heads
  without copying K/V per head, no mask at all when no row has padding). `fast_decode=False` uses
  `model.forward` (e.g. for a wrapped/sharded model). Tests hold both equal to recomputing the sequence.
- Sampling is batched (one sort/softmax/cumsum for all rows); each seeded row draws its uniform number from
  its own `torch.Generator` (seeded from `seed` and the sample index), so a seeded request is reproducible
  whatever else is in the batch.
- Reasoning vs answer: the prompt tells where generation starts (inside an open `<think>` block, or in the
  answer, e.g. after a no-think prefill); `</think>` is found in the decoded text, so it may be one token or
  several (the released tokenizer writes it as text) and may arrive split over several tokens. Where the
  answer starts is `chat.split_reasoning`'s rule (after the first `</think>`), which also gives the final
  `Completion.reasoning` / `.answer`. Streaming callbacks receive pieces labelled "reasoning" or "answer"
  whose concatenations equal those (text that may still become `</think>`, a leading `<think>` or a stop
  string is held back, as is whitespace at the edges of each part until it is known to be interior). A
  thinking budget forces `\\n</think>\\n` after `max_think_tokens` reasoning tokens and lets the model answer.
- Stop strings apply to all generated text (reasoning included), as in vLLM; the text is cut before the stop
  string. Stop token ids end a row and are not part of its output.
- Log-probs (`SamplingParams.logprobs`) are those of the distribution the trainer recomputes
  (`train.losses.token_logprobs`): log_softmax(logits / T) over the whole vocabulary, after the repetition
  penalty but before the audio-placeholder mask and top-k/top-p (T = 1 for greedy rows). They are computed
  only for the rows that ask, from a copy taken before `_choose` masks the logits in place, and never touch
  the draws: a seeded request gives the same tokens with or without them.
- An RL trainer can hold the engine still and replace its weights in place (`hold_new`, `abort_in_flight`,
  `check_weights`, `load_weights`; the server's `/pause` … `/resume`). Nothing in the engine is derived from
  weight values except the KV cache of running rows; after new weights arrive those rows' caches are
  recomputed from their tokens at the next step (vLLM's `clear_cache`), unless told to keep them. A
  quantized model refuses updates: its weights are packed copies that a float tensor cannot be copied into.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from audior1.chat import REASONING_END, THINK_END, THINK_START, IncrementalDecoder, reasoning_start, split_reasoning
from audior1.model import FastDecoder, KVCache, StepAudioR1ForCausalLM
from audior1.processor import Encoded, Processor, collate_mels
from audior1.sampling import apply_repetition_penalty, draw, row_generator, sampling_cdf

log = logging.getLogger(__name__)


@dataclass
class SamplingParams:
    max_tokens: int = 512
    temperature: float = 0.7  # 0 → greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 → off
    repetition_penalty: float = 1.0  # applied to prompt and generated tokens (as vLLM and transformers do)
    n: int = 1
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] | None = None  # None → the tokenizer's stop ids (<|EOT|>, <|endoftext|>, …)
    max_think_tokens: int | None = None  # thinking budget; None → unbounded
    think: bool = True  # False → the prompt closes an empty think block and the model answers directly
    skip_special_tokens: bool = False  # drop special tokens (not <think>/</think>) from the text
    logprobs: bool = False  # record each chosen token's log-prob (see `Completion.logprobs`)

    def validate(self) -> "SamplingParams":
        problems = []
        if self.max_tokens < 1:
            problems.append(f"max_tokens must be ≥ 1, got {self.max_tokens}")
        if self.temperature < 0:
            problems.append(f"temperature must be ≥ 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            problems.append(f"top_k must be ≥ 0, got {self.top_k}")
        if self.repetition_penalty <= 0:
            problems.append(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.n < 1:
            problems.append(f"n must be ≥ 1, got {self.n}")
        if self.max_think_tokens is not None and self.max_think_tokens < 0:
            problems.append(f"max_think_tokens must be ≥ 0, got {self.max_think_tokens}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            problems.append("stop strings must be non-empty strings")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @classmethod
    def resolve(cls, defaults: dict | None = None, **explicit) -> "SamplingParams":
        """The one way sampling settings are worked out: an explicit value (not None) wins, else the
        checkpoint's generation defaults (`checkpoint.generation_defaults`), else this class's own."""
        given = {k: v for k, v in explicit.items() if v is not None}
        return cls(**{**(defaults or {}), **given})


@dataclass
class Completion:
    text: str  # everything generated (reasoning, </think>, answer), stop token excluded
    reasoning: str
    answer: str
    token_ids: list[int]
    finish_reason: str  # "stop" | "length" | "cancelled"
    reasoning_tokens: int  # tokens generated before the think block closed (the closing tag included)
    prompt_tokens: int
    think_closed: bool  # whether the output (or the prompt) closed the think block
    # What stopped it, as vLLM reports it: the stop token's id (not part of token_ids), or the stop string
    # matched (cut from text); None when it did not stop on its own.
    stop_reason: int | str | None = None
    # Indices into token_ids of the tokens the engine forced (a spent thinking budget's `\n</think>\n`): they
    # were not sampled, so RL must not train on them.
    forced_positions: list[int] = field(default_factory=list)
    # With `SamplingParams.logprobs`: log_softmax(logits / T)[token] of every token of token_ids, then one more
    # for the stop token when stop_reason is an int (it was sampled; RL trains on it). None otherwise.
    logprobs: list[float] | None = None

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


class EngineError(RuntimeError):
    """A request failed inside the engine (not because of its input)."""


# A streaming callback: (request_id, sample_index, kind, text) with kind "reasoning" | "answer".
StreamCallback = Callable[[int, int, str, str], None]


class _Sample:
    """The decoding state of one sample row."""

    def __init__(self, request: "Request", index: int, tokenizer, generator: torch.Generator | None):
        self.request, self.index, self.params = request, index, request.params
        self.ids: list[int] = []
        self.decoder = IncrementalDecoder(tokenizer, skip_special_tokens=self.params.skip_special_tokens)
        self.text = ""
        self.streamed = 0  # characters of `text` already sent to the callback
        self.reasoning = request.starts_in_reasoning  # inside the think block now
        self.reasoning_end: int | None = None  # where "</think>" starts in text
        self._reasoning_from: int | None = None  # where the reasoning starts (after a leading `<think>`), once known
        self.answer_start: int | None = None if self.reasoning else 0  # where the answer starts in text
        self.reasoning_tokens = 0
        self.forced: list[int] = []
        self.forced_at: list[int] = []  # positions in `ids` of the tokens taken from `forced`
        self.logprobs: list[float] = []  # one per chosen token (the stop token included), if asked
        self.generator = generator
        self._uniforms: list[float] = []
        self.finish_reason: str | None = None
        self.stop_reason: int | str | None = None

    def uniform(self) -> float:
        """The row's next uniform number in [0, 1), drawn from its generator 64 at a time (one call instead
        of one per step; the sequence is the row's own whatever the batch)."""
        if not self._uniforms:
            self._uniforms = torch.rand(64, generator=self.generator, dtype=torch.float64).tolist()[::-1]
        return self._uniforms.pop()

    def reasoning_from(self) -> int | None:
        """Where the reasoning starts in `text`, None while a leading `<think>` may still be forming. Found once
        and kept, so a long chain costs nothing per token."""
        if self._reasoning_from is None:
            head = self.text if self.reasoning_end is None else self.text[: self.reasoning_end]
            self._reasoning_from = reasoning_start(head)
        return self._reasoning_from

    def regions(self):
        """(kind, start, end) of the reasoning and the answer in `text` as far as they are known."""
        if self.request.starts_in_reasoning:
            end = len(self.text) if self.reasoning_end is None else self.reasoning_end
            start = self.reasoning_from()
            yield "reasoning", end if start is None else start, end
        if self.answer_start is not None:
            yield "answer", self.answer_start, len(self.text)


@dataclass
class Request:
    """One prompt in the engine; `done` is set when all its samples ended (or it failed: `error`)."""

    id: int
    encoded: Encoded
    params: SamplingParams
    on_piece: StreamCallback | None
    starts_in_reasoning: bool
    samples: list[_Sample] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False
    error: str | None = None
    submitted: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    finished_at: float | None = None

    @property
    def prompt_tokens(self) -> int:
        return len(self.encoded.input_ids)

    def _finish(self) -> None:
        self.finished_at = time.perf_counter()
        self.done.set()


class Engine:
    def __init__(self, model: StepAudioR1ForCausalLM, processor: Processor, *, max_batch_size: int = 32,
                 max_prefill_tokens: int = 16384, fast_decode: bool = True):
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.max_batch_size = max_batch_size
        self.max_prefill_tokens = max_prefill_tokens
        self.fast_decode = fast_decode and FastDecoder.supports(model)  # LoRA-wrapped layers: `forward`
        self.think_end_ids = self.tokenizer.encode(REASONING_END)
        self.think_close_ids = self.tokenizer.encode(REASONING_END.lstrip("\n"))  # after a text ending in \n
        self.max_context = model.config.text.max_position_embeddings
        self.generation_defaults: dict = {}  # the checkpoint's sampling defaults (set by from_pretrained)
        self._next_id = 0  # request ids, handed out under the lock: `_pending` stays in id order
        self._hold_from: int | None = None  # requests with an id from here on wait (see `hold_new`)
        self._pending: list[Request] = []
        self._lock = threading.Lock()
        self._stale_cache = False  # the running rows' KV cache predates the weights (see `load_weights`)
        self.quantized: str | None = None  # set by from_pretrained(quantize=…): weight updates are refused
        self._weight_map: dict[str, torch.Tensor] | None = None  # see `_weights`
        self._reset()
        self._fast_decoder = FastDecoder(model)
        self._audio_token_ids = [i for i in (self.tokenizer.audio_start_id, self.tokenizer.audio_end_id,
                                             self.tokenizer.audio_patch_id) if i is not None]

    def _reset(self) -> None:
        self._rows: list[_Sample] = []
        self._cache: KVCache | None = None
        self._next: torch.Tensor | None = None  # [rows] the token each row feeds at the next step
        self._padded = False  # whether any row has invalid (padding) slots in the cache
        self._seen: torch.Tensor | None = None  # [rows, V] bool, only while a row uses repetition_penalty
        self._row_state: dict | None = None  # per-row sampling tensors, rebuilt when the rows change

    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype=None, device=None, processor_kwargs: dict | None = None,
                        adapter: str | Path | None = None, quantize: str | None = None, **kwargs) -> "Engine":
        """The engine over a checkpoint (`path`: a directory, an adapter directory or a Hub id; `adapter`: a
        LoRA adapter merged at load; `quantize`: int8 | int4 weight-only, see `audior1.quantize`)."""
        from audior1.checkpoint import generation_defaults, load_model

        engine = cls(load_model(path, dtype=dtype, device=device, adapter=adapter, quantize=quantize),
                     Processor.from_pretrained(path, **(processor_kwargs or {})), **kwargs)
        engine.generation_defaults = generation_defaults(path)
        engine.quantized = quantize or None
        return engine

    def sampling_params(self, **explicit) -> SamplingParams:
        """`SamplingParams.resolve` over this engine's checkpoint defaults."""
        return SamplingParams.resolve(self.generation_defaults, **explicit)

    # ---- public API ----

    def generate(self, prompts: list[list[dict] | Encoded], params: SamplingParams | None = None,
                 on_piece: StreamCallback | None = None) -> list[list[Completion]]:
        """Complete each prompt (messages or an `Encoded`); returns `params.n` completions per prompt."""
        params = (params or SamplingParams()).validate()
        requests = [self.add(p, params, on_piece) for p in prompts]
        while not all(r.done.is_set() for r in requests):
            self.step()
        failed = [r.error for r in requests if r.error]
        if failed:
            raise EngineError(failed[0])
        return [self.completions(r) for r in requests]

    def encode(self, messages: list[dict], params: SamplingParams, **kwargs) -> Encoded:
        return self.processor.encode(messages, think=params.think, **kwargs)

    def add(self, prompt: list[dict] | Encoded, params: SamplingParams, on_piece: StreamCallback | None = None) -> Request:
        """Queue a prompt (thread-safe); it is prefilled at the next `step()`."""
        params.validate()
        encoded = prompt if isinstance(prompt, Encoded) else self.encode(prompt, params)
        in_reasoning = self.prompt_in_reasoning(encoded.input_ids)
        if in_reasoning and params.max_think_tokens == 0:
            encoded, in_reasoning = self._close_think_in_prompt(encoded), False
        if len(encoded.input_ids) + params.max_tokens > self.max_context:
            raise ValueError(f"prompt of {len(encoded.input_ids)} tokens + max_tokens {params.max_tokens} exceeds "
                             f"the model's context of {self.max_context} tokens")
        with self._lock:
            request = Request(self._next_id, encoded, params, on_piece, in_reasoning)
            self._next_id += 1
            self._pending.append(request)
        return request

    def cancel(self, request: Request) -> None:
        """Stop a request (e.g. its client disconnected); its rows leave the batch at the next step."""
        request.cancelled = True

    @property
    def busy(self) -> bool:
        """Whether `step()` has anything to do: running rows, or a waiting request it may admit."""
        with self._lock:
            return bool(self._rows) or bool(self._pending and self._admissible(self._pending[0]))

    def _admissible(self, request: Request) -> bool:
        return self._hold_from is None or request.id < self._hold_from

    # ---- holding still (RL weight updates) ----

    def hold_new(self) -> None:
        """From now on, requests added later wait in the queue until `release_new()`; those already added
        (running or waiting) are unaffected: `step()` still runs them, so they can drain."""
        with self._lock:
            if self._hold_from is None:
                self._hold_from = self._next_id

    def release_new(self) -> None:
        with self._lock:
            self._hold_from = None

    def abort_in_flight(self) -> list[Request]:
        """Cancel and finish at once every request not held back by `hold_new` (running or waiting); they
        end with finish_reason "cancelled" and what they had generated. Call it only while no `step()` runs."""
        with self._lock:
            aborted = [r for r in self._pending if self._admissible(r)]
        aborted += list({id(s.request): s.request for s in self._rows}.values())
        for r in aborted:
            r.cancelled = True
        self._drop_cancelled()
        return aborted

    # ---- weights (RL: new policy weights in place) ----

    def weight_refusal(self) -> str | None:
        """Why this engine's weights cannot be replaced in place, or None when they can."""
        packed = [k for k, v in self.model.state_dict(keep_vars=True).items() if type(v.data) is not torch.Tensor]
        if self.quantized or packed:  # torchao's weights are tensor subclasses, even when built elsewhere
            how = f"loaded with --quantize {self.quantized}" if self.quantized else f"quantized ({packed[0]}, …)"
            return (f"the model was {how}: its decoder weights are packed quantized copies, not float tensors a "
                    "new policy can be copied into; serve it unquantized for RL rollouts")
        if not FastDecoder.supports(self.model):
            return ("the model's layers are wrapped (e.g. training-time LoRA layers): its state-dict names are not "
                    "the checkpoint's")
        return None

    def _weights(self) -> dict[str, torch.Tensor]:
        """The model's tensors by checkpoint name, built once: updates copy into these tensors in place, so the
        map never goes stale (and a reload of 1 264 tensors does not rebuild a state dict per tensor)."""
        if self._weight_map is None:
            self._weight_map = self.model.state_dict(keep_vars=True)
        return self._weight_map

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor an update may name (the checkpoint names: `model.state_dict()`'s) and its shape."""
        return {k: tuple(v.shape) for k, v in self._weights().items()}

    def check_weights(self, tensors: dict[str, torch.Tensor]) -> list[str]:
        """Every reason these tensors cannot be copied into the model (empty: they all can): an unknown name,
        a shape that differs, a tensor that is not floating point, or values that are not finite."""
        shapes = self.weight_shapes()
        problems = []
        for name, value in tensors.items():
            if name not in shapes:
                problems.append(f"unknown tensor {name!r} (the model has no such weight; names are the "
                                "checkpoint's, e.g. 'model.layers.0.self_attn.q_proj.weight')")
            elif tuple(value.shape) != shapes[name]:
                problems.append(f"{name} has shape {list(value.shape)}, the model's is {list(shapes[name])}")
            elif not value.is_floating_point():
                problems.append(f"{name} is {str(value.dtype).removeprefix('torch.')}, not a floating-point tensor")
            elif not bool(torch.isfinite(value).all()):
                problems.append(f"{name} holds NaN or infinite values")
        return problems

    @torch.no_grad()
    def load_weights(self, tensors, clear_cache: bool = True) -> int:
        """Copy (name, tensor) pairs into the model in place (cast to its dtype and device), one at a time;
        the caller checks them first (`check_weights`). Call only while no `step()` runs. Rows already running keep
        their tokens; their KV cache, computed with the old weights, is recomputed at the next step unless
        `clear_cache` is False (then their context stays as the old weights saw it). Returns how many."""
        targets = self._weights()
        n = 0
        for name, value in tensors:
            self._stale_cache = self._stale_cache or (clear_cache and bool(self._rows))
            self._copy_weight(targets[name], value)
            n += 1
        return n

    @staticmethod
    def _copy_weight(target: torch.Tensor, value: torch.Tensor) -> None:
        target.copy_(value)  # in place: the lean decode step holds these very tensors

    @property
    def num_running(self) -> int:
        return len(self._rows)

    @property
    def num_waiting(self) -> int:
        return len(self._pending)

    def prompt_in_reasoning(self, ids: list[int]) -> bool:
        """Whether generation starts inside an open think block: the last turn is the assistant's and its
        text so far opens `<think>` without closing it (the generation prompt, or a continued `<think>\\n`)."""
        bot = self.tokenizer.bot_id
        last = next((i for i in range(len(ids) - 1, -1, -1) if ids[i] == bot), None)
        if last is None:
            return False
        tail = self.tokenizer.decode(ids[last + 1:])
        if not tail.startswith("assistant"):
            return False
        opened = tail.rfind(THINK_START)
        return opened >= 0 and tail.rfind(THINK_END) < opened

    def _close_think_in_prompt(self, encoded: Encoded) -> Encoded:
        """A thinking budget of 0: close the open think block in the prompt itself, tokenised as one text
        (so `<think>\\n` + budget 0 gives exactly the no-think prompt `<think>\\n\\n</think>\\n`)."""
        ids, bot = encoded.input_ids, self.tokenizer.bot_id
        last = max(i for i in range(len(ids)) if ids[i] == bot)
        tail = self.tokenizer.decode(ids[last + 1:]) + REASONING_END
        return Encoded(ids[: last + 1] + self.tokenizer.encode(tail), encoded.audio, encoded.loss_mask)

    def completions(self, request: Request) -> list[Completion]:
        """One Completion per sample; a request cancelled before its prefill gets `n` empty ones."""
        samples = request.samples or [_Sample(request, j, self.tokenizer, None) for j in range(request.params.n)]
        out = []
        for s in samples:
            split = split_reasoning(s.text, request.starts_in_reasoning)
            out.append(Completion(s.text, split.reasoning, split.answer, list(s.ids), s.finish_reason or "cancelled",
                                  s.reasoning_tokens, request.prompt_tokens, split.closed, s.stop_reason,
                                  list(s.forced_at), list(s.logprobs) if s.params.logprobs else None))
        return out

    # ---- the loop ----

    @torch.no_grad()
    def step(self) -> None:
        """Admit waiting requests (one batched prefill), then advance every running row by one token."""
        self._drop_cancelled()
        if self._stale_cache:
            self._stale_cache = False
            try:  # rows may all have been cancelled since; then there is nothing to recompute
                if self._rows:
                    self._refresh_cache()
            except Exception as e:  # noqa: BLE001 - the running rows cannot go on; the engine can
                log.exception("recomputing the KV cache after a weight update failed")
                self._fail([], f"recomputing the cache after a weight update failed: {type(e).__name__}: {e}",
                           everyone=True)
        admitted = self._admit()
        if admitted:
            try:
                self._prefill(admitted)
            except Exception as e:  # noqa: BLE001 - one bad request must not stop the engine or its batch
                if len(admitted) == 1 or not self._consistent():
                    log.exception("prefill failed")
                    self._fail(admitted, f"prefill failed: {type(e).__name__}: {e}")
                else:
                    for r in admitted:  # find the culprit: prefill one by one
                        try:
                            self._prefill([r])
                        except Exception as e:  # noqa: BLE001
                            log.exception("prefill failed")
                            self._fail([r], f"prefill failed: {type(e).__name__}: {e}")
        elif self._rows:
            try:
                if self.fast_decode:
                    logits = self._fast_decoder(self._next, self._cache, padded=self._padded)
                else:
                    logits = self.model(self._next[:, None], cache=self._cache).logits[:, -1]
                self._advance(logits)
            except Exception as e:  # noqa: BLE001
                log.exception("decode step failed")
                self._fail([s.request for s in self._rows], f"decode failed: {type(e).__name__}: {e}", everyone=True)

    def _consistent(self) -> bool:
        return (not self._rows and self._cache is None) or (
            self._cache is not None and self._next is not None
            and self._cache.batch_size == len(self._rows) == self._next.shape[0])

    def _fail(self, requests: list[Request], message: str, everyone: bool = False) -> None:
        """Mark requests failed and take their rows out; if the batch state may be inconsistent (a step
        failed half-way), every running request fails and the engine starts afresh."""
        failed = {id(r) for r in requests}
        if everyone or not self._consistent():
            requests = list({id(s.request): s.request for s in self._rows}.values()) + list(requests)
            self._reset()
        elif any(id(s.request) in failed for s in self._rows):
            for s in self._rows:
                if id(s.request) in failed:
                    s.finish_reason = "cancelled"
            self._keep_rows([i for i, s in enumerate(self._rows) if s.finish_reason is None])
        for r in {id(r): r for r in requests}.values():
            r.error = r.error or message
            if not r.done.is_set():
                r._finish()

    def _admit(self) -> list[Request]:
        with self._lock:
            room = self.max_batch_size - len(self._rows)
            admitted, pending, width = [], [], 0
            for r in self._pending:
                w = max(width, r.prompt_tokens)
                first = not admitted and not self._rows
                fits = room >= r.params.n and w * (len(admitted) + 1) <= self.max_prefill_tokens
                if ((fits and not pending) or first) and self._admissible(r):
                    admitted.append(r)
                    room -= r.params.n
                    width = w
                else:
                    pending.append(r)  # keep arrival order: nobody overtakes a waiting request
            self._pending = pending
        return admitted

    def _left_padded(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) [B, width] on the CPU, left-padded: every row's last token is real."""
        width = max(len(seq) for seq in sequences)
        input_ids = torch.full((len(sequences), width), self.tokenizer.endoftext_id or 0, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.bool)
        for i, seq in enumerate(sequences):
            input_ids[i, width - len(seq):] = torch.tensor(seq)
            attention_mask[i, width - len(seq):] = True
        return input_ids, attention_mask

    def _prefill(self, requests: list[Request]) -> None:
        device = self.model.device
        input_ids, attention_mask = self._left_padded([r.encoded.input_ids for r in requests])
        width = input_ids.shape[1]
        headroom = min(max(r.params.max_tokens for r in requests) + len(self.think_end_ids), 256)  # grows on demand
        cache = self.model.new_cache(len(requests), width + headroom)
        out = self.model(input_ids.to(device), attention_mask=attention_mask.to(device),
                         audio_embeds=self._audio_embeds(requests), cache=cache, last_logits_only=True)
        rows = torch.tensor([i for i, r in enumerate(requests) for _ in range(r.params.n)], device=device)
        cache = cache.select(rows)  # fork: n samples share one prefill
        logits = out.logits[:, -1].index_select(0, rows)
        new_samples = []
        for r in requests:
            for j in range(r.params.n):
                s = _Sample(r, j, self.tokenizer, row_generator(r.params.seed, j, device))
                r.samples.append(s)
                new_samples.append(s)
        seen = None
        if any(r.params.repetition_penalty != 1.0 for r in requests) or self._seen is not None:
            vocab = logits.shape[-1]
            seen = torch.zeros(len(new_samples), vocab, dtype=torch.bool, device=device)
            for i, s in enumerate(new_samples):
                seen[i, torch.tensor(s.request.encoded.input_ids, device=device).clamp(max=vocab - 1)] = True
        old = len(self._rows)
        if self._rows:
            cache = KVCache.concat([self._cache, cache])
            logits = torch.cat([logits.new_zeros(old, logits.shape[-1]), logits])
            if seen is not None:
                prev = self._seen if self._seen is not None else seen.new_zeros(old, seen.shape[1])
                seen = torch.cat([prev, seen])
        self._cache, self._seen = cache, seen
        self._padded = not bool(cache.valid[:, : cache.length].all())
        self._rows = self._rows + new_samples
        self._row_state = None
        # Only the new rows sample now; running rows keep the token they were about to feed.
        self._advance(logits, only_from=old)

    def _refresh_cache(self) -> None:
        """Recompute the running rows' KV cache with the current weights (after a weight update): each row's
        prompt and generated tokens (all but the one it feeds next) are prefilled again, audio included, in
        groups of at most `max_prefill_tokens`. Positions, seen tokens, generators and text are untouched."""
        rows = self._rows
        sequences = [s.request.encoded.input_ids + s.ids[:-1] for s in rows]  # s.ids[-1] is `_next`
        headroom = min(max(s.params.max_tokens - len(s.ids) for s in rows) + len(self.think_end_ids), 256)
        caches, group = [], []
        for i, seq in enumerate(sequences):
            width = max([len(seq)] + [len(sequences[j]) for j in group])
            if group and width * (len(group) + 1) > self.max_prefill_tokens:
                caches.append(self._prefill_rows(group, sequences, headroom))
                group = []
            group.append(i)
        caches.append(self._prefill_rows(group, sequences, headroom))
        cache = caches[0] if len(caches) == 1 else KVCache.concat(caches)
        self._cache = cache
        self._padded = not bool(cache.valid[:, : cache.length].all())

    def _prefill_rows(self, group: list[int], sequences: list[list[int]], headroom: int) -> KVCache:
        device = self.model.device
        input_ids, attention_mask = self._left_padded([sequences[i] for i in group])
        cache = self.model.new_cache(len(group), input_ids.shape[1] + headroom)
        self.model(input_ids.to(device), attention_mask=attention_mask.to(device), cache=cache, return_logits=False,
                   audio_embeds=self._audio_embeds([self._rows[i].request for i in group]))
        return cache

    def _audio_embeds(self, requests: list[Request]) -> torch.Tensor | None:
        """Adapter frames of every audio chunk, in prompt order (chunks of equal length are encoded together,
        so a prompt's audio embeddings do not depend on its batch: see `model.audio_embeddings`)."""
        mels, lens, frames = collate_mels([f for r in requests for f in r.encoded.audio])
        if mels is None:
            return None
        device = self.model.device
        return self.model.audio_embeddings(mels.to(device), lens.to(device), frames.to(device))

    def _advance(self, logits: torch.Tensor, only_from: int = 0) -> None:
        """Choose each row's next token from `logits` [rows, V], record it, and drop finished rows."""
        rows = self._rows
        logits = self._penalised(logits)
        scored = self._scored_rows(logits, only_from)  # before `_choose` masks the logits in place
        chosen = self._choose(logits, only_from)
        logprobs = self._logprobs(scored, chosen, len(rows))
        if only_from:
            next_tokens = self._next.tolist() + chosen[only_from:]
        else:
            next_tokens = chosen
        for sample, token, logprob in zip(rows[only_from:], next_tokens[only_from:], logprobs[only_from:]):
            self._record(sample, token, logprob)
        self._next = torch.tensor(next_tokens, dtype=torch.long, device=logits.device)
        if self._seen is not None:
            self._seen[torch.arange(len(rows), device=logits.device), self._next] = True
        keep = [i for i, s in enumerate(rows) if s.finish_reason is None]
        if len(keep) < len(rows):
            self._keep_rows(keep)

    def _sampling_state(self) -> dict:
        """Per-row sampling tensors, built once per change of the row set."""
        if self._row_state is None:
            rows, device = self._rows, self.model.device
            sampled = [i for i, s in enumerate(rows) if s.params.temperature > 0]
            col = lambda values: torch.tensor(values, dtype=torch.float32, device=device)[:, None]
            self._row_state = {
                "sampled": sampled,
                "sampled_index": torch.tensor(sampled, dtype=torch.long, device=device),
                "temperature": col([rows[i].params.temperature for i in sampled]),
                "top_p": col([rows[i].params.top_p for i in sampled]),
                "top_k": torch.tensor([rows[i].params.top_k for i in sampled], dtype=torch.long, device=device)[:, None],
                "any_top_p": any(rows[i].params.top_p < 1 for i in sampled),
                "any_top_k": any(rows[i].params.top_k > 0 for i in sampled),
                "penalty": col([s.params.repetition_penalty for s in rows]),
                "any_penalty": any(s.params.repetition_penalty != 1.0 for s in rows),
                "scored": [i for i, s in enumerate(rows) if s.params.logprobs],  # rows that want log-probs
            }
            if not self._row_state["any_penalty"]:
                self._seen = None
        return self._row_state

    def _penalised(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits in fp32 with the repetition penalty applied (rows that use one)."""
        state = self._sampling_state()
        logits = logits.float()
        if state["any_penalty"] and self._seen is not None:
            logits = apply_repetition_penalty(logits, self._seen, state["penalty"])
        return logits

    def _scored_rows(self, logits: torch.Tensor, only_from: int):
        """For the rows (from `only_from`) that want log-probs: (their indices, logits / T [k, V], log Z [k]);
        None when no row does, so that nothing is computed then."""
        rows = [i for i in self._sampling_state()["scored"] if i >= only_from]
        if not rows:
            return None
        index = torch.tensor(rows, dtype=torch.long, device=logits.device)
        temperature = torch.tensor([self._rows[i].params.temperature or 1.0 for i in rows],  # greedy: T = 1
                                   dtype=torch.float32, device=logits.device)[:, None]
        x = logits.index_select(0, index) / temperature  # a copy: the audio mask in `_choose` does not reach it
        return rows, x, torch.logsumexp(x, dim=-1)

    @staticmethod
    def _logprobs(scored, chosen: list[int], n_rows: int) -> list[float | None]:
        """Each row's log-prob of its chosen token (None for rows that did not ask)."""
        out: list[float | None] = [None] * n_rows
        if scored is not None:
            rows, x, log_z = scored
            tokens = torch.tensor([chosen[i] for i in rows], dtype=torch.long, device=x.device)[:, None]
            for i, value in zip(rows, (x.gather(1, tokens)[:, 0] - log_z).tolist()):
                out[i] = value
        return out

    def _choose(self, logits: torch.Tensor, only_from: int) -> list[int]:
        """Next token of every row (rows before `only_from` get a placeholder) from fp32 logits after the
        repetition penalty (`_penalised`): forced tokens first, then greedy argmax or temperature → top-k →
        top-p → inverse-CDF draw. Masks the audio placeholders in `logits` in place."""
        state = self._sampling_state()
        # Audio placeholders are inputs only: a sampled <audio_patch> would have no audio to stand for.
        logits[:, self._audio_token_ids] = float("-inf")
        chosen = logits.argmax(-1).tolist()
        sampled = [i for i in state["sampled"] if i >= only_from]
        if sampled:
            # New rows are last, so the rows that sample now are a suffix of the sampled rows: only they
            # draw from their generators (a joining request never advances a running row's generator).
            first = len(state["sampled"]) - len(sampled)
            rows = logits if len(sampled) == len(self._rows) else logits.index_select(0, state["sampled_index"][first:])
            cdf, mass, order = sampling_cdf(rows, state["temperature"][first:],
                                            state["top_k"][first:] if state["any_top_k"] else None,
                                            state["top_p"][first:] if state["any_top_p"] else None)
            u = torch.tensor([self._rows[i].uniform() for i in sampled], dtype=cdf.dtype, device=cdf.device)
            tokens = draw(cdf, mass, order, u[:, None])
            for i, token in zip(sampled, tokens):
                chosen[i] = token
        for i in range(only_from, len(self._rows)):
            s = self._rows[i]
            if s.forced:
                chosen[i] = s.forced.pop(0)
                s.forced_at.append(len(s.ids))
        return chosen

    def _record(self, s: _Sample, token: int, logprob: float | None = None) -> None:
        request = s.request
        if request.first_token_at is None:
            request.first_token_at = time.perf_counter()
        if s.params.logprobs:
            s.logprobs.append(logprob)  # before the stop check: the stop token's log-prob is kept too
        stop_ids = s.params.stop_token_ids if s.params.stop_token_ids is not None else self.tokenizer.stop_ids
        if token in stop_ids:
            s.finish_reason, s.stop_reason = "stop", token
            s.text += s.decoder.flush()
            self._flush(s, final=True)
            return
        s.ids.append(token)
        if s.reasoning:
            s.reasoning_tokens += 1
        before = len(s.text)
        s.text += s.decoder.push(token)
        if s.params.stop and self._apply_stop_strings(s, before):
            s.finish_reason = "stop"  # _apply_stop_strings set stop_reason
        if s.reasoning:
            at = s.text.find(THINK_END, max(0, before - len(THINK_END) + 1))
            if at >= 0:
                s.reasoning = False
                s.reasoning_end, s.answer_start = at, at + len(THINK_END)
        if s.finish_reason is None:
            if len(s.ids) >= s.params.max_tokens:
                s.finish_reason = "length"
                s.text += s.decoder.flush()
            elif (s.reasoning and not s.forced and s.params.max_think_tokens is not None
                  and s.reasoning_tokens >= s.params.max_think_tokens):
                # budget spent: close the reasoning (`\n</think>\n`, one newline only), let the model answer
                s.forced = list(self.think_close_ids if s.text.endswith("\n") else self.think_end_ids)
        self._flush(s, final=s.finish_reason is not None)

    def _apply_stop_strings(self, s: _Sample, before: int) -> bool:
        longest = max(len(stop) for stop in s.params.stop)
        start = max(0, before - longest + 1)
        hits = [(h, stop) for stop in s.params.stop if (h := s.text.find(stop, start)) >= 0]
        if not hits:
            return False
        at, s.stop_reason = min(hits)
        s.text = s.text[:at]
        s._reasoning_from = None  # the cut may reach into a leading `<think>`: find the start again
        return True

    def _flush(self, s: _Sample, final: bool) -> None:
        """Send the callback every piece of text that can no longer change, labelled by phase, with the
        whitespace at each phase's edges left out (so the pieces add up to the stripped final parts)."""
        callback = s.request.on_piece
        if callback is None:
            return
        text = s.text
        limit = len(text) if final else len(text) - _holdback(s)
        for kind, start, end in s.regions():
            end = min(end, limit)
            lo = max(start, s.streamed)
            if lo == start:
                while lo < end and text[lo].isspace():
                    lo += 1
            hi = end
            while hi > lo and text[hi - 1].isspace():
                hi -= 1
            if hi > lo:
                s.streamed = hi
                callback(s.request.id, s.index, kind, text[lo:hi])

    def _keep_rows(self, keep: list[int]) -> None:
        """Keep only the given rows (cache, pending tokens), cut cache columns no remaining row uses, and mark
        requests whose samples all ended."""
        gone = {id(s.request): s.request for s in self._rows if s.finish_reason is not None}
        self._rows = [self._rows[i] for i in keep]
        self._row_state = None
        if keep:
            c = self._cache
            index = torch.tensor(keep, dtype=torch.long, device=c.valid.device)
            valid = c.valid[:, : c.length].index_select(0, index)
            used = valid.any(0)
            first = int(used.to(torch.uint8).argmax()) if bool(used.any()) else c.length
            self._cache = c.keep(index, first)
            self._next = self._next.index_select(0, index)
            self._seen = self._seen.index_select(0, index) if self._seen is not None else None
            self._padded = not bool(valid[:, first:].all())
        else:
            self._reset()
        for r in gone.values():
            if all(s.finish_reason for s in r.samples):
                r._finish()

    def _drop_cancelled(self) -> None:
        with self._lock:
            for r in [r for r in self._pending if r.cancelled]:
                self._pending.remove(r)
                r._finish()
        if any(s.request.cancelled for s in self._rows):
            for s in self._rows:
                if s.request.cancelled:
                    s.finish_reason = "cancelled"
            self._keep_rows([i for i, s in enumerate(self._rows) if s.finish_reason is None])


def _holdback(s: _Sample) -> int:
    """Characters at the end of the text that might still become `</think>`, a stop string, or (before any
    reasoning is known) the leading `<think>` that is not part of the reasoning."""
    if s.reasoning and s.reasoning_from() is None:
        return len(s.text)
    candidates = list(s.params.stop) + ([THINK_END] if s.reasoning else [])
    hold, text = 0, s.text
    for word in candidates:
        for k in range(min(len(word) - 1, len(text)), hold, -1):
            if text.endswith(word[:k]):
                hold = k
                break
    return hold
