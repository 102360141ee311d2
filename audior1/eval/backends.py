"""Backends: where completions come from. One protocol, one OpenAI-compatible implementation, one hook.

Design choices:
- `LocalBackend` runs `audior1.engine` in-process (batched; think budgets enforced in one pass).
- `Backend.generate(items, sampling, skip=...)` yields one `Completion` per (item, sample) as soon as it is
  ready (any order); `skip` holds (item_id, sample) pairs already done, so the harness can resume.
- The endpoint backend speaks to any OpenAI-compatible `/v1/chat/completions` (vLLM first): audio files are
  decoded with `audior1.audio`, cut into ≤ 25 s chunks and sent as consecutive base64 16-bit WAV
  `input_audio` parts. With `vllm=True` (default) it reproduces StepFun's client: an assistant prefill
  `<think>\\n` continued by the server (`continue_final_message`), `repetition_penalty`, stop at <|EOT|>.
- Think modes: think (prefill `<think>\\n`), no-think (prefill `<think>\\n\\n</think>\\n`, the cold-start
  convention; the whole output is the answer) and think budgets (budget forcing in two requests: reasoning
  up to N tokens stopped at `</think>`, then `\\n</think>\\n` is appended and the answer generated).
- Servers that split reasoning out (`reasoning_content`, vLLM's reasoning parsers) are put back together as
  `reasoning\\n</think>\\nanswer`, so one extractor serves both kinds.
- Failure policy: connection errors, timeouts, 429 and 5xx are retried with exponential backoff, then abort
  the run (`EndpointError`, naming the URL); other 4xx fail that one request (recorded, retried on resume).
  A dead endpoint fails before the first item, not after the first timeout.
"""

from __future__ import annotations

import base64
import functools
import io
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from typing import Iterable, Iterator, Protocol

import httpx

from audior1.chat import EOT, NO_THINK_PREFILL, OFFICIAL_LAYOUT, REASONING_END, THINK_END, THINK_PREFILL
from audior1.eval.extract import post_think
from audior1.eval.items import EvalItem

# A remote server's tokenizer is not at hand: stop where StepFun's client stops, at <|EOT|>'s released id.
RELEASED_EOT_ID = next(token_id for token_id, token in OFFICIAL_LAYOUT.items() if token == EOT)


@dataclass
class Sampling:
    temperature: float = 0.7
    top_p: float | None = None
    max_tokens: int = 32000
    repetition_penalty: float = 1.0
    n: int = 1
    think: bool = True
    think_budget: int | None = None      # None: unbounded; 0: same as no-think; N: at most N reasoning tokens
    answer_max_tokens: int = 2048        # after a budget forced the think block closed
    seed: int | None = None              # sample s uses seed + s

    @property
    def mode(self) -> str:
        return "no_think" if (not self.think or self.think_budget == 0) else "think"

    def to_dict(self) -> dict:
        return asdict(self) | {"mode": self.mode}


@dataclass
class Completion:
    item_id: str
    sample: int
    text: str                            # everything generated after the prompt (and prefill)
    reasoning: str | None
    answer: str | None                   # post-think answer (extract.post_think); None: unparseable
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    latency_s: float = 0.0
    finish_reason: str | None = None
    reasoning_tokens_estimated: bool = False
    forced_close: bool = False           # a think budget closed the block
    error: str | None = None             # the request failed (recorded, counted wrong, retried on resume)


class Backend(Protocol):
    def describe(self) -> dict: ...

    def generate(self, items: list[EvalItem], sampling: Sampling, *,
                 skip: Iterable[tuple[str, int]] = ()) -> Iterator[Completion]: ...


class EndpointError(RuntimeError):
    """The endpoint is unreachable or keeps failing: the run stops (what was done is kept)."""


class BackendUnavailable(RuntimeError):
    """The requested backend cannot be built here (e.g. the local engine is not available)."""


class RequestError(RuntimeError):
    """One request was refused (4xx): recorded for that item, the run goes on."""


def local_backend(model_dir: str, *, concurrency: int = 8, dtype=None, device=None, adapter=None, quantize=None,
                  **_) -> Backend:
    """A backend over the local inference engine (`--model DIR`, `--adapter`, `--quantize`); `concurrency` is
    its batch size."""
    return LocalBackend(model_dir, batch_size=concurrency, dtype=dtype, device=device, adapter=adapter,
                        quantize=quantize)


class LocalBackend:
    """Batched generation with `audior1.engine` in this process: items go through the same Processor as
    training, `n` samples share one prefill, and think budgets are enforced by the engine in one pass."""

    def __init__(self, model_dir: str, *, batch_size: int = 8, dtype=None, device=None, engine=None, adapter=None,
                 quantize=None):
        from audior1.engine import Engine

        self.model_dir = str(model_dir)
        self.adapter, self.quantize = (str(adapter) if adapter else None), quantize
        self.batch_size = max(1, batch_size)
        self.engine = engine or Engine.from_pretrained(model_dir, dtype=dtype, device=device, adapter=adapter,
                                                       quantize=quantize)

    def describe(self) -> dict:
        config = self.engine.model.config
        extra = {k: v for k, v in (("adapter", self.adapter), ("quantize", self.quantize)) if v}
        return {"backend": "local", "model_dir": self.model_dir, **extra, "dtype": str(self.engine.model.dtype),
                "device": str(self.engine.model.device), "layers": config.text.num_hidden_layers,
                "hidden_size": config.text.hidden_size}

    def _params(self, sampling: Sampling):
        no_think = sampling.mode == "no_think"  # top_p None: the checkpoint's generation default
        return self.engine.sampling_params(max_tokens=sampling.max_tokens, temperature=sampling.temperature,
                                           top_p=sampling.top_p, repetition_penalty=sampling.repetition_penalty,
                                           n=sampling.n, seed=sampling.seed, think=not no_think,
                                           max_think_tokens=None if no_think else sampling.think_budget)

    def generate(self, items: list[EvalItem], sampling: Sampling, *,
                 skip: Iterable[tuple[str, int]] = ()) -> Iterator[Completion]:
        skip = set(skip)
        todo = [item for item in items if any((item.id, s) not in skip for s in range(sampling.n))]
        params = self._params(sampling)
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            t0 = time.perf_counter()
            prompts = [self.engine.encode(item.messages, params) for item in batch]
            # Benchmarks ask for up to 32k new tokens; a smaller local model stops at its context instead.
            room = self.engine.max_context - max(len(p.input_ids) for p in prompts)
            if room < 1:
                raise ValueError(f"a prompt in this batch is longer than the model's context ({self.engine.max_context})")
            results = self.engine.generate(prompts, replace(params, max_tokens=min(params.max_tokens, room)))
            latency = (time.perf_counter() - t0) / len(batch)
            for item, completions in zip(batch, results):
                for s, c in enumerate(completions):
                    if (item.id, s) in skip:
                        continue
                    yield self._completion(item, s, c, sampling, latency)

    @staticmethod
    def _completion(item: EvalItem, sample: int, c, sampling: Sampling, latency: float) -> Completion:
        think = sampling.mode == "think"
        ex = post_think(c.text, think=think)
        forced = (think and sampling.think_budget is not None and c.think_closed
                  and c.reasoning_tokens >= sampling.think_budget)
        return Completion(item.id, sample, c.text, ex.reasoning if think else "", ex.answer, c.prompt_tokens,
                          c.completion_tokens, c.reasoning_tokens if think else 0, latency, c.finish_reason,
                          forced_close=forced)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------------------


def chat_url(endpoint: str) -> str:
    """Accept `http://host:port`, `…/v1` or the full `…/v1/chat/completions`."""
    url = endpoint.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


def check_endpoint(client: httpx.Client, url: str, timeout: float = 10.0) -> None:
    """Fail fast when nothing answers at `url` (any HTTP answer, even 404, counts as alive)."""
    models = url.rsplit("/chat/completions", 1)[0] + "/models"
    try:
        client.get(models, timeout=timeout)
    except httpx.HTTPError as e:
        raise EndpointError(f"endpoint {url} is not reachable: {type(e).__name__}: {e}") from None


def post_json(client: httpx.Client, url: str, payload: dict, *, retries: int, backoff: float,
              timeout: float) -> dict:
    """POST with retries on connection errors, timeouts, 429 and 5xx (exponential backoff)."""
    last = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            r = client.post(url, json=payload, timeout=timeout)
        except httpx.HTTPError as e:
            last = f"{type(e).__name__}: {e}"
            continue
        if r.status_code == 429 or r.status_code >= 500:
            last = f"HTTP {r.status_code}: {r.text[:300]}"
            continue
        if r.status_code >= 400:
            raise RequestError(f"{url}: HTTP {r.status_code}: {r.text[:500]}")
        try:
            return r.json()
        except ValueError:
            last = f"invalid JSON: {r.text[:200]}"
    raise EndpointError(f"{url} failed after {retries + 1} attempts: {last}")


@functools.lru_cache(maxsize=32)
def encode_audio(path: str) -> tuple[str, ...]:
    """A file as base64 16-bit WAV chunks of at most 25 s (16 kHz mono, first channel)."""
    import soundfile as sf

    from audior1.audio import SAMPLE_RATE, chunk_audio, load_audio

    out = []
    for chunk in chunk_audio(load_audio(path, max_seconds=None)):
        buf = io.BytesIO()
        sf.write(buf, chunk, SAMPLE_RATE, format="WAV", subtype="PCM_16")
        out.append(base64.b64encode(buf.getvalue()).decode("ascii"))
    return tuple(out)


def to_openai_messages(messages: list[dict]) -> list[dict]:
    """Local audio parts → one `input_audio` part per chunk; everything else unchanged."""
    out = []
    for m in messages:
        if not isinstance(m.get("content"), list):
            out.append(dict(m))
            continue
        parts = []
        for p in m["content"]:
            if p.get("type") == "audio":
                parts += [{"type": "input_audio", "input_audio": {"data": b64, "format": "wav"}}
                          for b64 in encode_audio(str(p["audio"]))]
            else:
                parts.append(p)
        out.append({**m, "content": parts})
    return out


# ---------------------------------------------------------------------------------------------------------
# The OpenAI-compatible backend
# ---------------------------------------------------------------------------------------------------------


class OpenAIBackend:
    def __init__(self, endpoint: str, model: str, *, concurrency: int = 4, timeout: float = 3600.0,
                 retries: int = 4, backoff: float = 2.0, api_key: str | None = None, vllm: bool = True,
                 stop_token_ids: tuple[int, ...] = (RELEASED_EOT_ID,), extra_body: dict | None = None):
        self.url, self.model = chat_url(endpoint), model
        self.concurrency, self.timeout, self.retries, self.backoff = max(1, concurrency), timeout, retries, backoff
        self.vllm, self.stop_token_ids, self.extra_body = vllm, list(stop_token_ids), dict(extra_body or {})
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(headers=headers, limits=httpx.Limits(max_connections=self.concurrency + 2))
        self._checked = False
        self._lock = threading.Lock()

    def describe(self) -> dict:
        return {"backend": "openai", "endpoint": self.url, "served_model": self.model, "vllm_extras": self.vllm}

    def check(self) -> None:
        with self._lock:
            if not self._checked:
                check_endpoint(self.client, self.url)
                self._checked = True

    def _request(self, item: EvalItem, sampling: Sampling, sample: int, prefill: str | None,
                 max_tokens: int, stop: list[str] | None = None) -> tuple[str, dict, str | None]:
        messages = to_openai_messages(item.messages)
        payload = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                   "temperature": sampling.temperature}
        if sampling.top_p is not None:
            payload["top_p"] = sampling.top_p
        if sampling.seed is not None:
            payload["seed"] = sampling.seed + sample
        if stop:
            payload["stop"] = stop
        if self.vllm:
            payload.update(repetition_penalty=sampling.repetition_penalty, stop_token_ids=self.stop_token_ids,
                           skip_special_tokens=False)
            if prefill is not None:
                messages.append({"role": "assistant", "content": prefill})
                payload.update(continue_final_message=True, add_generation_prompt=False)
        payload.update(self.extra_body)
        data = post_json(self.client, self.url, payload, retries=self.retries, backoff=self.backoff,
                         timeout=self.timeout)
        try:
            choice = data["choices"][0]
            msg = choice.get("message") or {}
        except (KeyError, IndexError, TypeError):
            raise EndpointError(f"{self.url}: unexpected response {str(data)[:300]}") from None
        content = msg.get("content")
        reasoning = msg.get("reasoning_content", msg.get("reasoning"))
        if reasoning is not None and stop is None:
            text = reasoning + (REASONING_END + content if content is not None else "")
        else:
            text = (reasoning or "") + (content or "")
        return text, data.get("usage") or {}, choice.get("finish_reason")

    def _one(self, item: EvalItem, sampling: Sampling, sample: int) -> Completion:
        t0 = time.perf_counter()
        try:
            return self._generate(item, sampling, sample, t0)
        except RequestError as e:
            return Completion(item.id, sample, "", None, None, latency_s=time.perf_counter() - t0, error=str(e))

    def _generate(self, item: EvalItem, sampling: Sampling, sample: int, t0: float) -> Completion:
        budget, mode = sampling.think_budget, sampling.mode
        if (not self.vllm) and (budget is not None or mode == "no_think"):
            raise EndpointError("think budgets and --no-think need an assistant prefill (a vLLM-style endpoint); "
                                "drop --plain-openai")
        if mode == "no_think":
            prefill = NO_THINK_PREFILL if self.vllm else None
            text, usage, finish = self._request(item, sampling, sample, prefill, sampling.max_tokens)
            ex = post_think(text, think=False)
            return Completion(item.id, sample, text, "", ex.answer, usage.get("prompt_tokens"),
                              usage.get("completion_tokens"), 0, time.perf_counter() - t0, finish)
        if budget is None:
            prefill = THINK_PREFILL if self.vllm else None
            text, usage, finish = self._request(item, sampling, sample, prefill, sampling.max_tokens)
            ex = post_think(text, think=True)
            rt, estimated = _reasoning_tokens(usage, ex.reasoning, text)
            return Completion(item.id, sample, text, ex.reasoning, ex.answer, usage.get("prompt_tokens"),
                              usage.get("completion_tokens"), rt, time.perf_counter() - t0, finish, estimated)
        # Budget forcing: reasoning up to `budget` tokens, then close the block and ask for the answer.
        thought, u1, finish1 = self._request(item, sampling, sample, THINK_PREFILL, budget, stop=[THINK_END])
        thought = thought.split(THINK_END)[0].rstrip()
        answer_text, u2, finish2 = self._request(item, sampling, sample, f"{THINK_PREFILL}{thought}{REASONING_END}",
                                                 sampling.answer_max_tokens)
        text = f"{thought}{REASONING_END}{answer_text}"
        ex = post_think(text, think=True)
        total = (u1.get("completion_tokens") or 0) + (u2.get("completion_tokens") or 0)
        return Completion(item.id, sample, text, ex.reasoning, ex.answer, u1.get("prompt_tokens"), total,
                          u1.get("completion_tokens"), time.perf_counter() - t0, finish2,
                          forced_close=finish1 == "length")

    def generate(self, items: list[EvalItem], sampling: Sampling, *,
                 skip: Iterable[tuple[str, int]] = ()) -> Iterator[Completion]:
        self.check()
        skip = set(skip)
        jobs = iter([(item, s) for item in items for s in range(sampling.n) if (item.id, s) not in skip])
        pending: set[Future] = set()
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="eval") as pool:
            try:
                while True:
                    while len(pending) < 2 * self.concurrency:       # bounded: never queue the whole set
                        job = next(jobs, None)
                        if job is None:
                            break
                        pending.add(pool.submit(self._one, job[0], sampling, job[1]))
                    if not pending:
                        return
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        yield f.result()                               # EndpointError propagates: abort
            finally:
                for f in pending:
                    f.cancel()

    def close(self) -> None:
        self.client.close()


def _reasoning_tokens(usage: dict, reasoning: str, text: str) -> tuple[int | None, bool]:
    """Server-reported reasoning tokens when given, else the reasoning's share of completion tokens."""
    details = usage.get("completion_tokens_details") or {}
    if details.get("reasoning_tokens") is not None:
        return int(details["reasoning_tokens"]), False
    total = usage.get("completion_tokens")
    if total is None or not text:
        return None, True
    return round(total * len(reasoning) / len(text)), True
