"""An OpenAI-compatible server: `POST /v1/chat/completions` with audio, `GET /v1/models`, `GET /health`, the
web page at `/`, and (with `--enable-weight-updates`) the endpoints an RL trainer drives it by.

Design choices
- One engine, one thread: a `Scheduler` thread calls `engine.step()` while anything is queued or running;
  handlers encode their request (audio decoding included) in the thread pool, `engine.add` it, and wait on
  a `Ticket`: the engine thread queues streamed pieces and wakes the event loop at most once per step
  (non-streaming requests get no per-token callbacks at all). New requests join the running batch between
  decode steps. A client that disconnects is cancelled (`engine.cancel`), freeing its rows.
- Responses follow OpenAI, with vLLM's reasoning extensions: the reasoning goes in `reasoning_content`
  (message or stream delta), the answer in `content`; `usage.completion_tokens_details.reasoning_tokens`.
  `--reasoning-format inline` instead puts everything in `content` (`reasoning\\n</think>\\nanswer`), as
  StepFun's own vLLM did. The official client's fields are honoured: `continue_final_message` (its
  final assistant `<think>\\n` gives exactly the normal generation prompt), `add_generation_prompt`,
  `skip_special_tokens`, `stop_token_ids`, `repetition_penalty`, `top_k`.
- Thinking budget: `thinking_budget` / `max_think_tokens` (tokens), else `reasoning_effort`
  (none/minimal → 0, low/medium/high → `ServerConfig.effort_budgets`), else
  `chat_template_kwargs.enable_thinking=false` → no thinking; unset → unbounded.
- Every bad request gets a 4xx with `{"error": {"message", "type", "param", "code"}}` naming the problem;
  nothing a client sends can stop the server. Unknown fields are ignored, as OpenAI clients send many.
  Everything a client controls is checked here, before it reaches the processor or the engine: strict JSON
  (no NaN/Infinity, bounded depth and integer size, valid Unicode), role names, no audio tokens in text,
  bounded stop strings and top_k, usable local paths. A 500 is a server bug, never a bad request.
- Local files: `{"type": "audio", "audio": "/path"}` and `audio_url` `file://` URLs are refused unless the
  operator allowed a directory, and then only files that resolve (symlinks and `..` included) inside it.
  Remote URLs are never fetched. Defaults bind 127.0.0.1.
- RL rollouts: `logprobs` / `return_token_ids` give each choice the log-probs (the engine's definition, the
  one the trainer recomputes) and ids of its tokens, the stop token included, as vLLM reports them; not
  with `stream` (refused: a trainer reads whole completions). `RolloutControl` adds vLLM's RL endpoint
  names (`/pause`, `/resume`, `/is_paused`, `/start_weight_update`, `/update_weights`,
  `/finish_weight_update`, `/weight_info`) plus `/reload_weights`. The tensors travel in the HTTP body
  (a safetensors file per chunk), not over NCCL as in vLLM.
- Pausing is the scheduler's: new requests are held in the engine (`Engine.hold_new`); abort cancels what
  is in flight, wait lets it drain, keep freezes it. `/pause` answers only once the engine thread is parked
  outside `engine.step()`, and it stays parked until `/resume`, so weights are written while nothing reads
  them. Control operations run one at a time (a lock), in the thread pool, never on the event loop.
- A weight chunk is checked whole (names, shapes, float, finite) before any of it is written, so a refused
  chunk leaves the open update as it was. A copy that fails after the checks marks the weights mixed
  (`dirty`): `/resume` is refused until a `/reload_weights` or an update that writes every tensor.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import json
import logging
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from audior1.audio import AudioError
from audior1.chat import AUDIO_END, AUDIO_PATCH, AUDIO_START, REASONING_END, ConversationError
from audior1.checkpoint import check_keys, open_checkpoint, read_weights, state_shapes
from audior1.engine import Completion, Engine, Request, SamplingParams
from audior1.processor import MessageError

log = logging.getLogger("audior1.server")
WEB_DIR = Path(__file__).parent / "web"
_BASE64 = re.compile(r"[A-Za-z0-9+/_\-=\s]{64,}")
MAX_JSON_DEPTH = 64  # nesting levels a request body may have (tool schemas need a dozen or so)
MAX_INT_DIGITS = 100  # longer integer literals are refused before Python converts them
_ROLE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")  # rendered as `<|BOT|>{role}\n`: a name, nothing more
_SURROGATE = re.compile("[\ud800-\udfff]")
_AUDIO_MARKERS = (AUDIO_START, AUDIO_END, AUDIO_PATCH)  # the processor writes these for audio parts only


@dataclass
class ServerConfig:
    model_name: str = "audior1"
    api_key: str | None = None
    max_audio_seconds: float = 600.0
    max_audio_parts: int = 32
    max_n: int = 16
    max_tokens: int = 4096  # default (and cap) of new tokens when the request does not say
    max_request_mb: float = 64.0
    allow_local_audio: Path | None = None
    reasoning_format: str = "split"  # "split" (reasoning_content + content) | "inline" (all in content)
    effort_budgets: dict = field(default_factory=lambda: {"low": 512, "medium": 2048, "high": None})
    max_stop_chars: int = 256  # per stop string (each one is matched against the text at every token)
    enable_weight_updates: bool = False  # the RL endpoints (/pause, /update_weights, …); 404 without
    max_weight_chunk_mb: float = 4096.0  # largest /update_weights body (the trainer sends big models in chunks)


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                             409: "conflict_error", 413: "invalid_request_error",
                             500: "server_error"}.get(status, "invalid_request_error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# ---- the engine thread ---------------------------------------------------------------------------------

class Ticket:
    """One request as the HTTP side sees it. The engine thread queues streamed pieces (a deque: safe across
    threads) and, at most once per step, wakes the event loop; the handler drains the queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stream: bool):
        self.loop, self.stream = loop, stream
        self.pieces: collections.deque = collections.deque()
        self.ready = asyncio.Event()
        self.request: Request | None = None
        self.finished = False  # set by the engine thread before the last wake-up

    def on_piece(self, request_id: int, index: int, kind: str, text: str) -> None:
        self.pieces.append((index, kind, text))

    def wake(self) -> None:
        self.loop.call_soon_threadsafe(self.ready.set)

    async def wait(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self.ready.wait(), timeout)
        self.ready.clear()

    def drain(self) -> list[tuple[int, str, str]]:
        """The queued pieces, consecutive pieces of one sample and kind merged (fewer, larger events)."""
        out = []
        while self.pieces:
            j, kind, text = self.pieces.popleft()
            if out and out[-1][:2] == (j, kind):
                out[-1] = (j, kind, out[-1][2] + text)
            else:
                out.append((j, kind, text))
        return out


class Scheduler:
    """Steps the engine in one background thread while it has work, and wakes the waiting handlers. It can be
    paused (`pause`): then the thread parks outside `engine.step()` until `resume`."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._cv = threading.Condition()
        self._tickets: dict[int, Ticket] = {}
        self._stopping = False
        self.paused = False  # new requests wait; the engine steps only to drain a `wait` pause
        self._draining = False  # a `wait` pause in progress: what was in flight still runs
        self._parked = False  # the engine thread is waiting on `_cv`, outside `engine.step()`
        self.clear_cache = True  # after new weights, recompute the frozen rows' KV cache (vLLM's clear_cache)
        self._thread = threading.Thread(target=self._run, name="audior1-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._thread.join(timeout=10)

    @property
    def frozen(self) -> bool:
        """Paused, and the engine thread parked: nothing reads the weights until `resume`."""
        return self.paused and self._parked and not self._draining

    def pause(self, mode: str, clear_cache: bool = True) -> None:
        """Hold the engine still; returns once the engine thread is parked outside `step()`. `mode`: "abort"
        cancels every request in flight (they finish as "cancelled"), "wait" lets them finish first, "keep"
        freezes them where they are. Requests that arrive meanwhile wait for `resume`. Pausing a paused
        server changes nothing, except that "abort" cancels the frozen requests."""
        with self._cv:
            if not self.paused:
                self.engine.hold_new()
                self.paused, self._draining = True, mode == "wait"
            self.clear_cache = clear_cache
            self._cv.notify_all()
            while not self._parked:
                self._cv.wait()
            self._draining = False
            if mode == "abort":  # the engine thread is parked and cannot leave while we hold `_cv`
                self.engine.abort_in_flight()
        self._wake_tickets()

    def resume(self) -> None:
        with self._cv:
            self.paused = self._draining = False
            self.engine.release_new()
            self._cv.notify_all()

    def submit(self, encoded, params: SamplingParams, ticket: Ticket) -> Request:
        ticket.request = self.engine.add(encoded, params, ticket.on_piece if ticket.stream else None)
        with self._cv:
            self._tickets[ticket.request.id] = ticket
            self._cv.notify()
        return ticket.request

    def cancel(self, request: Request) -> None:
        self.engine.cancel(request)
        with self._cv:
            self._cv.notify()

    def _may_step(self) -> bool:
        return (not self.paused or self._draining) and self.engine.busy

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stopping and not self._may_step():
                    if not self._parked:
                        self._parked = True
                        self._cv.notify_all()  # a waiting `pause` may return now
                    self._cv.wait()
                if self._stopping:
                    self._parked = True
                    self._cv.notify_all()
                    return
                self._parked = False
            try:
                self.engine.step()
            except Exception:  # noqa: BLE001 - the engine isolates failures; this is the last line
                log.exception("engine step failed")
            self._wake_tickets()

    def _wake_tickets(self) -> None:
        """Wake the handlers whose request finished or has streamed pieces waiting."""
        with self._cv:
            tickets = list(self._tickets.values())
        for ticket in tickets:
                if ticket.request.done.is_set():
                    ticket.finished = True
                    with self._cv:
                        self._tickets.pop(ticket.request.id, None)
                    ticket.wake()
                elif ticket.pieces:
                    ticket.wake()


# ---- request parsing -----------------------------------------------------------------------------------

def _short(value, limit: int = 80) -> str:
    """A client's value as JSON for an error message, cut to `limit` characters (never the whole of a huge one)."""
    text = json.dumps(value[:limit + 1] if isinstance(value, str) else value, ensure_ascii=False)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")  # an unpaired surrogate as its escape
    return text if len(text) <= limit else text[:limit] + "…"


def _typed(body: dict, key: str, kinds, *, check=None, rule: str = "", name: str | None = None) -> object:
    """body[key] if it has one of the types (and passes `check`), None if absent; else a 400 naming it
    (`name`: how the message and `param` call it, default the key)."""
    value = body.get(key)
    name = name or key
    if value is None:
        return None
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    is_bool_for_number = isinstance(value, bool) and bool not in kinds  # True is an int in Python, not here
    if not isinstance(value, kinds) or is_bool_for_number or (check is not None and not check(value)):
        want = rule or " or ".join({int: "an integer", float: "a number", bool: "a boolean", str: "a string",
                                    list: "a list", dict: "an object"}[k] for k in kinds)
        raise APIError(400, f"'{name}' must be {want}, got {_short(value)}", param=name)
    return value


@dataclass
class ChatJob:
    messages: list[dict]
    params: SamplingParams
    stream: bool
    include_usage: bool
    continue_final_message: bool
    add_generation_prompt: bool
    tools: list | None
    max_tokens_given: bool
    ignore_eos: bool = False  # vLLM's: only the request's stop_token_ids end it
    logprobs: bool = False  # OpenAI's: each choice's tokens with their log-probs
    return_token_ids: bool = False  # vLLM's: prompt_token_ids, and token_ids per choice


def parse_chat_request(body, config: ServerConfig, defaults: dict | None = None) -> ChatJob:
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    model = _typed(body, "model", str)
    if model is not None and model != config.model_name:
        raise APIError(404, f"model {_short(model)} does not exist; this server serves {config.model_name!r}",
                       param="model", code="model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "'messages' must be a non-empty list of {role, content} objects", param="messages")
    audio_parts = 0
    clean = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not m["role"]:
            raise APIError(400, f"messages[{i}] must be an object with a 'role' string", param=f"messages[{i}]")
        if not _ROLE.fullmatch(m["role"]):
            raise APIError(400, f"messages[{i}].role must be a role name such as 'system', 'user' or 'assistant' "
                           f"(a letter, then letters, digits, '_' or '-'; at most 64), got {_short(m['role'])}",
                           param=f"messages[{i}].role")
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                part = _content_part(part, f"messages[{i}].content[{j}]", config)
                audio_parts += part["type"] != "text"
                parts.append(part)
            content = parts
        elif isinstance(content, str):
            _no_audio_markers(content, f"messages[{i}].content")
        elif content is not None:
            raise APIError(400, f"messages[{i}].content must be a string or a list of parts", param=f"messages[{i}].content")
        clean.append({"role": m["role"], "content": content})
    if audio_parts > config.max_audio_parts:
        raise APIError(400, f"too many audio parts: {audio_parts} (this server accepts at most {config.max_audio_parts})",
                       param="messages", code="too_many_audio_parts")

    n = _typed(body, "n", int, check=lambda v: 1 <= v <= config.max_n, rule=f"an integer from 1 to {config.max_n}")
    temperature = _typed(body, "temperature", (int, float), check=lambda v: 0 <= v <= 2, rule="a number from 0 to 2")
    top_p = _typed(body, "top_p", (int, float), check=lambda v: 0 < v <= 1, rule="a number in (0, 1]")
    top_k = _typed(body, "top_k", int, check=lambda v: -1 <= v < 2**31, rule="an integer from -1 to 2^31 - 1 "
                   "(-1 or 0: off)")
    penalty = _typed(body, "repetition_penalty", (int, float), check=lambda v: 0 < v < math.inf,
                     rule="a finite number > 0")
    seed = _typed(body, "seed", int)
    for name in ("presence_penalty", "frequency_penalty"):
        if _typed(body, name, (int, float)) not in (None, 0):
            raise APIError(400, f"'{name}' is not supported (use repetition_penalty)", param=name)
    logprobs = _typed(body, "logprobs", bool) or False
    _typed(body, "top_logprobs", int, check=lambda v: v == 0, rule="0 (this server returns no alternative tokens; "
           "'logprobs': true gives the chosen tokens' log-probs)")
    return_token_ids = _typed(body, "return_token_ids", bool) or False
    response_format = body.get("response_format")
    if response_format is not None and (not isinstance(response_format, dict) or response_format.get("type") != "text"):
        raise APIError(400, "only response_format {'type': 'text'} is supported", param="response_format")
    max_tokens = None
    for name in ("max_completion_tokens", "max_tokens"):
        max_tokens = _typed(body, name, int, check=lambda v: v >= 1, rule="a positive integer")
        if max_tokens is not None:
            break
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (not isinstance(stop, list) or len(stop) > 16
                             or not all(isinstance(s, str) and s for s in stop)):
        raise APIError(400, "'stop' must be a non-empty string or a list of at most 16 of them", param="stop")
    for word in stop or []:
        if len(word) > config.max_stop_chars:
            raise APIError(400, f"'stop' strings may have at most {config.max_stop_chars} characters, got one of "
                           f"{len(word)}", param="stop")
    stop_ids = _typed(body, "stop_token_ids", list, check=lambda v: all(isinstance(x, int) and x >= 0 for x in v),
                      rule="a list of non-negative integers")
    ignore_eos = _typed(body, "ignore_eos", bool) or False
    stream = _typed(body, "stream", bool)
    stream_options = _typed(body, "stream_options", dict) or {}
    _typed(stream_options, "include_usage", bool, name="stream_options.include_usage")
    continue_final = _typed(body, "continue_final_message", bool) or False
    add_prompt = _typed(body, "add_generation_prompt", bool)
    skip_special = _typed(body, "skip_special_tokens", bool)
    tools = _typed(body, "tools", list, check=lambda v: all(isinstance(t, dict) for t in v),
                   rule="a list of objects")
    if tools:
        _no_audio_markers(json.dumps(tools, ensure_ascii=False), "tools")
    think, budget = True, None
    kwargs = _typed(body, "chat_template_kwargs", dict) or {}
    for name in ("enable_thinking", "thinking"):
        _typed(kwargs, name, bool, name=f"chat_template_kwargs.{name}")
    if kwargs.get("enable_thinking") is False or kwargs.get("thinking") is False:
        think, budget = False, 0
    effort = _typed(body, "reasoning_effort", str)
    if effort is not None:
        efforts = {"none": 0, "minimal": 0, **config.effort_budgets}
        if effort not in efforts:
            raise APIError(400, f"'reasoning_effort' must be one of {', '.join(efforts)}", param="reasoning_effort")
        budget = efforts[effort]
        think = budget != 0
    for name in ("thinking_budget", "max_think_tokens"):
        explicit = _typed(body, name, int, check=lambda v: v >= 0, rule="a non-negative integer")
        if explicit is not None:
            budget, think = explicit, explicit != 0
            break
    for name, asked in (("logprobs", logprobs), ("return_token_ids", return_token_ids)):
        if asked and stream:
            raise APIError(400, f"'{name}' is not supported with 'stream': true (ask without streaming: the "
                           "whole completion then carries them)", param=name)
    if continue_final and clean[-1]["role"] != "assistant":
        raise APIError(400, "continue_final_message needs an assistant message last", param="continue_final_message")

    # Unset sampling settings fall back to the checkpoint's generation defaults (`defaults`).
    params = SamplingParams.resolve(
        defaults, max_tokens=max_tokens or config.max_tokens, temperature=temperature, top_p=top_p,
        top_k=max(top_k or 0, 0), repetition_penalty=penalty, n=n or 1, seed=seed, stop=stop or [],
        max_think_tokens=budget,
        think=think or continue_final,  # a continued prompt is used as given; the budget does the rest
        skip_special_tokens=True if skip_special is None else skip_special, logprobs=logprobs)
    if stop_ids or ignore_eos:
        params.stop_token_ids = list(stop_ids or [])
    return ChatJob(clean, params, bool(stream), bool(stream_options.get("include_usage")), continue_final,
                   True if add_prompt is None else add_prompt, tools, max_tokens is not None, ignore_eos,
                   logprobs, return_token_ids)


def _content_part(part, where: str, config: ServerConfig) -> dict:
    """A content part as the Processor takes it; audio that names a local file is vetted here."""
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise APIError(400, f"{where} must be an object with a 'type'", param=where)
    kind = part["type"]
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise APIError(400, f"{where}.text must be a string", param=f"{where}.text")
        _no_audio_markers(part["text"], f"{where}.text")
        return {"type": "text", "text": part["text"]}
    if kind == "input_audio":
        payload = part.get("input_audio")
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), str):
            raise APIError(400, f"{where}.input_audio must be an object with a base64 string 'data'",
                           param=f"{where}.input_audio")
        return {"type": "input_audio", "input_audio": {"data": payload["data"]}}
    if kind == "audio":
        src = part.get("audio")
        if not isinstance(src, str) or not src:
            raise APIError(400, f"{where}.audio must be a base64 string (or a path the server allows)",
                           param=f"{where}.audio")
        if src.startswith("data:") or _BASE64.fullmatch(src):
            return {"type": "input_audio", "input_audio": {"data": src}}
        return {"type": "audio", "audio": _local_audio(src, where, config)}
    if kind == "audio_url":
        url = part.get("audio_url")
        url = url.get("url") if isinstance(url, dict) else url
        if not isinstance(url, str):
            raise APIError(400, f"{where}.audio_url must be {{'url': ...}}", param=f"{where}.audio_url")
        if url.startswith("data:"):
            return {"type": "input_audio", "input_audio": {"data": url}}
        try:
            parsed = urlparse(url)
        except ValueError as e:  # e.g. "http://[::1": an unclosed IPv6 host
            raise APIError(400, f"{where}.audio_url is not a valid URL ({e}): {_short(url)}",
                           param=f"{where}.audio_url") from None
        if parsed.scheme == "file":
            if parsed.netloc not in ("", "localhost"):
                raise APIError(400, f"{where}: file URLs must name a local path", param=f"{where}.audio_url")
            return {"type": "audio", "audio": _local_audio(unquote(parsed.path), where, config)}
        raise APIError(400, f"{where}: only data: and file: audio URLs are accepted (this server fetches nothing "
                       "from the network; send the audio as base64 input_audio)", param=f"{where}.audio_url")
    raise APIError(400, f"{where}: unsupported content part type {kind!r} (expected text, input_audio, audio "
                   "or audio_url)", param=f"{where}.type")


def _local_audio(raw: str, where: str, config: ServerConfig) -> Path:
    root = config.allow_local_audio
    if root is None:
        raise APIError(403, f"{where}: local audio paths are refused (the server was not started with "
                       "--allow-local-audio DIR); send the audio as base64 input_audio",
                       param=where, code="local_audio_refused")
    if "\0" in raw:
        raise APIError(400, f"{where}: the audio path {_short(raw)} contains a NUL character", param=where)
    root = Path(root).resolve()
    path = Path(raw)
    try:
        resolved = (path if path.is_absolute() else root / path).resolve()  # follows symlinks and `..`
        if not resolved.is_relative_to(root):  # before any existence check: nothing outside DIR is probed
            raise APIError(403, f"{where}: {_short(raw)} is outside the directory this server may read audio from",
                           param=where, code="local_audio_refused")
        found = resolved.is_file()
    except (OSError, ValueError) as e:  # a name too long, a symlink loop, …
        raise APIError(400, f"{where}: the audio path {_short(raw)} cannot be used ({type(e).__name__}: {e})",
                       param=where) from None
    if not found:
        raise APIError(400, f"{where}: no such audio file {_short(raw)} in the allowed directory", param=where)
    return resolved


def _no_audio_markers(text: str, where: str) -> None:
    """Text may not hold the audio tokens: the processor places them for audio parts only, and the model needs
    one audio frame per `<audio_patch>` (a stray one would fail the request in the engine)."""
    for marker in _AUDIO_MARKERS:
        if marker in text:
            raise APIError(400, f"{where} contains {marker!r}, a token reserved for audio; send audio as an "
                           "input_audio part", param=where)


# ---- responses -----------------------------------------------------------------------------------------

def _usage(completions: list[Completion], prompt_tokens: int) -> dict:
    generated = sum(c.completion_tokens for c in completions)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": generated, "total_tokens": prompt_tokens + generated,
            "completion_tokens_details": {"reasoning_tokens": sum(c.reasoning_tokens for c in completions)}}


def _stop_reason(c: Completion, eos_ids: list[int]) -> int | str | None:
    """vLLM's `stop_reason`: the id of a requested stop token or the stop string that ended the sample; None
    when the model's own end-of-turn tokens (or the length limit) ended it."""
    return None if c.stop_reason in eos_ids else c.stop_reason


def _message(c: Completion, request: Request, inline: bool) -> dict:
    if inline:
        return {"role": "assistant", "content": c.text}
    reasoning = c.reasoning if request.starts_in_reasoning else None
    return {"role": "assistant", "content": c.answer if (c.think_closed or not request.starts_in_reasoning) else None,
            "reasoning_content": reasoning}


def _output_ids(c: Completion) -> list[int]:
    """The sample's token ids as vLLM reports them: the generated ones, then the stop token when one ended it."""
    return c.token_ids + ([c.stop_reason] if isinstance(c.stop_reason, int) else [])


LOGPROB_FLOOR = -9999.0  # what vLLM reports for -inf (JSON has no infinities)


def _logprobs_content(c: Completion, tokenizer) -> dict:
    """OpenAI's `logprobs` object: one entry per token of `_output_ids(c)` (the stop token included)."""
    entries = []
    for token, logprob in zip(_output_ids(c), c.logprobs or []):
        raw = tokenizer.token_bytes(token)  # exact bytes: a byte-level token may be part of a character
        value = max(logprob, LOGPROB_FLOOR) if math.isfinite(logprob) else LOGPROB_FLOOR
        entries.append({"token": raw.decode("utf-8", "replace"), "logprob": value, "bytes": list(raw),
                        "top_logprobs": []})
    return {"content": entries}


def _choice(j: int, c: Completion, request: Request, job: "ChatJob", inline: bool, eos_ids: list[int],
            tokenizer) -> dict:
    choice = {"index": j, "message": _message(c, request, inline), "logprobs": None,
              "finish_reason": c.finish_reason, "stop_reason": _stop_reason(c, eos_ids)}
    if job.logprobs:
        choice["logprobs"] = _logprobs_content(c, tokenizer)
    if job.return_token_ids:
        choice["token_ids"] = _output_ids(c)
        choice["forced_token_positions"] = list(c.forced_positions)  # audior1's: tokens not sampled
    return choice


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


# ---- the app -------------------------------------------------------------------------------------------

def create_app(engine: Engine, config: ServerConfig):
    """The FastAPI app over an engine. The scheduler thread starts and stops with the app's lifespan."""
    scheduler = Scheduler(engine)
    stop_ids = list(engine.tokenizer.stop_ids)
    if config.enable_weight_updates and engine.weight_refusal():
        raise ValueError(f"weight updates cannot be enabled: {engine.weight_refusal()}")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        scheduler.start()
        try:
            yield
        finally:
            scheduler.stop()

    app = FastAPI(title="audior1", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.scheduler, app.state.config = scheduler, config

    @app.exception_handler(APIError)
    async def api_error(_, e: APIError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(HTTPException)
    async def http_error(_, e: HTTPException):
        return JSONResponse(APIError(e.status_code, str(e.detail)).body(), status_code=e.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_, e):
        return JSONResponse(APIError(400, f"invalid request: {e.errors()[:3]}").body(), status_code=400)

    @app.exception_handler(Exception)
    async def internal_error(_, e: Exception):
        log.exception("internal error")
        return JSONResponse(APIError(500, f"internal error: {type(e).__name__}").body(), status_code=500)

    def authorize(request: HTTPRequest) -> None:
        if config.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), config.api_key.encode()):
            raise APIError(401, "missing or invalid API key (send 'Authorization: Bearer KEY')", code="invalid_api_key")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": config.model_name, "running": engine.num_running,
                "waiting": engine.num_waiting}

    @app.get("/v1/models")
    async def models(request: HTTPRequest):
        authorize(request)
        return {"object": "list", "data": [{"id": config.model_name, "object": "model", "created": 0,
                                            "owned_by": "audior1", "max_model_len": engine.max_context}]}

    @app.get("/")
    async def index():
        return FileResponse(WEB_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: HTTPRequest):
        authorize(request)
        job = parse_chat_request(await _json_body(request, config), config, engine.generation_defaults)
        encoded = await run_in_threadpool(_encode, engine, job)
        prompt_tokens = len(encoded.input_ids)
        room = engine.max_context - prompt_tokens
        if room < 1:
            raise APIError(400, f"the prompt has {prompt_tokens} tokens, which fills the model's context of "
                           f"{engine.max_context} tokens", param="messages", code="context_length_exceeded")
        if job.max_tokens_given and job.params.max_tokens > room:
            raise APIError(400, f"the prompt has {prompt_tokens} tokens and max_tokens is {job.params.max_tokens}: "
                           f"together over the model's context of {engine.max_context} tokens",
                           param="max_tokens", code="context_length_exceeded")
        job.params.max_tokens = min(job.params.max_tokens, room)
        if job.params.stop_token_ids is not None and not job.ignore_eos:  # added to the tokenizer's stop ids
            job.params.stop_token_ids = list(dict.fromkeys(stop_ids + job.params.stop_token_ids))
        ticket = Ticket(asyncio.get_running_loop(), job.stream)
        try:
            handle = scheduler.submit(encoded, job.params, ticket)
        except ValueError as e:
            raise APIError(400, str(e)) from None
        head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": config.model_name}
        inline = config.reasoning_format == "inline"
        if job.stream:
            return StreamingResponse(_stream(scheduler, ticket, head, job, inline), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            while not ticket.finished:
                try:
                    await ticket.wait(timeout=0.5)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        scheduler.cancel(handle)
                        return JSONResponse({}, status_code=499)
        except asyncio.CancelledError:
            scheduler.cancel(handle)
            raise
        if handle.error:
            raise APIError(500, handle.error)
        completions = engine.completions(handle)
        reply = {**head, "object": "chat.completion",
                 "choices": [_choice(j, c, handle, job, inline, stop_ids, engine.tokenizer)
                             for j, c in enumerate(completions)],
                 "usage": _usage(completions, prompt_tokens)}
        if job.return_token_ids:  # the prompt as the engine saw it (a thinking budget of 0 closes it there)
            reply["prompt_token_ids"] = list(handle.encoded.input_ids)
        return reply

    add_rollout_routes(app, RolloutControl(scheduler, config) if config.enable_weight_updates else None,
                       authorize, config)
    return app


# ---- RL rollouts: pause, resume, weight updates ----------------------------------------------------------

PAUSE_MODES = ("abort", "wait", "keep")


class RolloutControl:
    """What an RL trainer drives besides chat completions: pause/resume and in-place weight updates (a stream
    of safetensors chunks between start and finish, or a reload from a checkpoint directory). One operation
    at a time; each runs in the thread pool and raises `APIError` for what it refuses."""

    def __init__(self, scheduler: Scheduler, config: ServerConfig):
        self.scheduler, self.engine, self.config = scheduler, scheduler.engine, config
        self._lock = threading.Lock()
        self.weight_version: str | None = None  # set by finish / reload; None until the first update
        self.update_open = False
        self._updated: set[str] = set()  # tensors written in the open update
        self.dirty: str | None = None  # why the weights may be a mix of two versions (a copy failed half-way)
        self._rewritten: set[str] = set()  # tensors written since the weights became dirty

    def info(self) -> dict:
        return {"weight_version": self.weight_version, "is_paused": self.scheduler.paused,
                "update_open": self.update_open}

    def pause(self, mode: str, clear_cache: bool) -> dict:
        with self._lock:
            self.scheduler.pause(mode, clear_cache)
        return {"status": "paused"}

    def resume(self) -> dict:
        with self._lock:
            if self.dirty:
                raise APIError(409, f"the weights are inconsistent ({self.dirty}); load a whole model first: "
                               "POST /reload_weights, or a weight update that writes every tensor",
                               code="weights_dirty")
            if self.update_open:
                raise APIError(409, f"a weight update is open ({len(self._updated)} tensors written so far): "
                               "POST /finish_weight_update before /resume", code="update_open")
            self.scheduler.resume()
        return {"status": "resumed"}

    def start(self) -> dict:
        with self._lock:
            self.require_paused()
            if self.update_open:
                raise APIError(409, "a weight update is already open: send its chunks to /update_weights and "
                               "POST /finish_weight_update", code="update_open")
            self.update_open, self._updated = True, set()
        return {"status": "started"}

    def update(self, tensors: dict) -> dict:
        """One chunk: every tensor checked before any is written, so a refused chunk writes nothing."""
        with self._lock:
            self.require_open()
            problems = self.engine.check_weights(tensors)
            if problems:
                more = f"; … ({len(problems) - 8} more)" if len(problems) > 8 else ""
                raise APIError(400, "weight chunk refused, nothing of it was written (the update stays open): "
                               + "; ".join(problems[:8]) + more, code="bad_weights")
            self._write(tensors.items())
            self._updated.update(tensors)
            return {"updated": len(tensors), "total_updated": len(self._updated)}

    def finish(self, version: str | None) -> dict:
        with self._lock:
            self.require_open()
            self.update_open = False
            self.weight_version = version
            self._clean_if_whole()
            return {"status": "finished", "weight_version": version, "tensors_updated": len(self._updated)}

    def reload(self, path, version: str | None) -> dict:
        """Every tensor of the checkpoint at `path`, checked against the model before any is read, then read
        and copied one at a time (never a second model in memory)."""
        with self._lock:
            self.require_paused()
            if self.update_open:
                raise APIError(409, "a weight update is open: POST /finish_weight_update before /reload_weights",
                               code="update_open")
            t0 = time.perf_counter()
            source = self._checked_checkpoint(path)
            n = self._write(read_weights(source))
            self.weight_version = version
            self._clean_if_whole()
            return {"status": "reloaded", "weight_version": version, "tensors": n,
                    "seconds": round(time.perf_counter() - t0, 3)}

    # ---- checks and writing ----

    def require_paused(self) -> None:
        if not self.scheduler.paused:
            raise APIError(409, "the server is not paused: POST /pause first (weights are replaced only while "
                           "no generation step runs)", code="not_paused")
        if not self.scheduler.frozen:  # cannot happen while operations hold the lock; never write if it did
            raise APIError(409, "the server is still pausing: try again when POST /pause has answered",
                           code="not_paused")

    def require_open(self) -> None:
        self.require_paused()
        if not self.update_open:
            raise APIError(409, "no weight update is open: POST /start_weight_update first", code="no_open_update")

    def _checked_checkpoint(self, path):
        """The checked read plan for a checkpoint directory (`checkpoint.open_checkpoint`: config.json, strict
        names and shapes of its safetensors), whose shapes must also be the running model's. 400 otherwise."""
        if not isinstance(path, str) or not path:
            raise APIError(400, "'path' must be a checkpoint directory (a non-empty string)", param="path")
        where = Path(path)
        try:
            found = where.is_dir() and (where / "config.json").is_file()
            missing = not where.is_dir()
        except (OSError, ValueError) as e:  # a NUL character, a name too long, …
            raise APIError(400, f"path {_short(path)} cannot be used ({type(e).__name__}: {e})", param="path") from None
        if missing:
            raise APIError(400, f"path {_short(path)}: no such directory", param="path")
        if not found:
            raise APIError(400, f"path {_short(path)}: no config.json (not a checkpoint directory in the official "
                           "layout: config.json + *.safetensors)", param="path")
        try:
            meta, source = open_checkpoint(where)
        except Exception as e:  # noqa: BLE001 - anything the files hold is the client's to fix, not a crash
            raise APIError(400, f"path {_short(path)} cannot be read as a checkpoint: {e}", param="path") from None
        problems = check_keys(self.engine.weight_shapes(), state_shapes(meta), str(where))
        if problems:
            raise APIError(400, "the checkpoint does not fit the running model, nothing was written:\n  "
                           + "\n  ".join(problems), param="path", code="bad_weights")
        return source

    def _write(self, tensors) -> int:
        """Copy (name, tensor) pairs into the model. A failure now (after the checks) leaves a mix of old and
        new weights: the server is marked dirty and will not resume until a whole model is written."""
        n = 0
        try:
            for name, value in tensors:
                self.engine.load_weights([(name, value)], clear_cache=self.scheduler.clear_cache)
                self._rewritten.add(name)
                n += 1
        except Exception as e:  # noqa: BLE001
            log.exception("writing weights failed")
            self.dirty, self._rewritten = f"copying weights failed after {n} tensors: {type(e).__name__}: {e}", set()
            raise APIError(500, f"{self.dirty}. The model now holds a mix of old and new weights; /resume is refused "
                           "until POST /reload_weights or a weight update that writes every tensor",
                           code="weights_dirty") from None
        return n

    def _clean_if_whole(self) -> None:
        if self.dirty and self._rewritten >= set(self.engine.weight_shapes()):
            self.dirty = None
        self._rewritten = set() if self.dirty is None else self._rewritten


def add_rollout_routes(app, control: RolloutControl | None, authorize, config: ServerConfig) -> None:
    """The RL endpoints. Without `--enable-weight-updates` (`control` None) they answer 404 saying how to turn
    them on; with it they need the API key whenever the server has one."""
    app.state.rollout = control

    def rollout(request: HTTPRequest) -> RolloutControl:
        if control is None:
            raise APIError(404, f"{request.url.path} is off: start the server with --enable-weight-updates "
                           "(audior1 serve --enable-weight-updates …) to pause it and replace its weights",
                           code="weight_updates_disabled")
        authorize(request)
        return control

    @app.post("/pause")
    async def pause(request: HTTPRequest):
        c = rollout(request)
        mode = request.query_params.get("mode", "abort")
        if mode not in PAUSE_MODES:
            raise APIError(400, f"'mode' must be one of {', '.join(PAUSE_MODES)}, got {_short(mode)}", param="mode")
        clear_cache = _query_bool(request, "clear_cache", True)
        return await run_in_threadpool(c.pause, mode, clear_cache)

    @app.post("/resume")
    async def resume(request: HTTPRequest):
        return await run_in_threadpool(rollout(request).resume)

    @app.get("/is_paused")
    async def is_paused(request: HTTPRequest):
        return {"is_paused": rollout(request).scheduler.paused}

    @app.get("/weight_info")
    async def weight_info(request: HTTPRequest):
        return rollout(request).info()

    @app.post("/start_weight_update")
    async def start_weight_update(request: HTTPRequest):
        c = rollout(request)
        body = await _json_body(request, config, empty={})
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be empty or a JSON object")
        return await run_in_threadpool(c.start)

    @app.post("/update_weights")
    async def update_weights(request: HTTPRequest):
        c = rollout(request)
        c.require_open()  # before reading a body of gigabytes
        if request.headers.get("content-type", "").startswith("application/json"):
            raise APIError(400, "/update_weights takes the tensors themselves in the body: the bytes of a "
                           "safetensors file (safetensors.torch.save(tensors)) with Content-Type: "
                           "application/octet-stream; there is no NCCL transfer to describe in JSON")
        tensors = _safetensors_chunk(await _body_bytes(request, config.max_weight_chunk_mb))
        return await run_in_threadpool(c.update, tensors)

    @app.post("/finish_weight_update")
    async def finish_weight_update(request: HTTPRequest):
        c = rollout(request)
        body = await _json_body(request, config, empty={})
        version = _weight_version(body)
        return await run_in_threadpool(c.finish, version)

    @app.post("/reload_weights")
    async def reload_weights(request: HTTPRequest):
        c = rollout(request)
        body = await _json_body(request, config)
        version = _weight_version(body)
        if "path" not in body:
            raise APIError(400, "'path' is required: a checkpoint directory (config.json + *.safetensors)",
                           param="path")
        return await run_in_threadpool(c.reload, body["path"], version)


def _query_bool(request: HTTPRequest, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if raw.lower() not in ("true", "false", "1", "0"):
        raise APIError(400, f"'{name}' must be true or false, got {_short(raw)}", param=name)
    return raw.lower() in ("true", "1")


def _weight_version(body) -> str | None:
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    return _typed(body, "weight_version", str)


def _safetensors_chunk(raw: bytes) -> dict:
    """The tensors of a safetensors file held in `raw`; a 400 for anything else."""
    from safetensors.torch import load

    if not raw:
        raise APIError(400, "the body is empty: send the bytes of a safetensors file (safetensors.torch.save)")
    try:
        return load(raw)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for malformed files
        raise APIError(400, f"the body is not a safetensors file ({type(e).__name__}: {_short(str(e), 200)}); "
                       "send the bytes of safetensors.torch.save(tensors) with Content-Type: "
                       "application/octet-stream") from None


class _BodyError(ValueError):
    """A JSON value this server refuses while parsing (NaN, Infinity, an integer of too many digits)."""


def _refuse_constant(name: str):
    raise _BodyError(f"{name} is not a JSON value (JSON numbers are finite)")


def _parse_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _BodyError(f"an integer of {len(digits.lstrip('-'))} digits is too large "
                         f"(at most {MAX_INT_DIGITS} digits)")
    return int(digits)


async def _body_bytes(request, limit_mb: float) -> bytes:
    """The raw body, at most `limit_mb` (read in pieces, so a chunked upload is cut off too); else a 413."""
    limit = int(limit_mb * 1024 * 1024)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise APIError(413, f"request body of {int(length)} bytes is over the limit of {limit} bytes")
    pieces, size = [], 0
    async for piece in request.stream():
        size += len(piece)
        if size > limit:
            raise APIError(413, f"request body is over the limit of {limit} bytes (streamed without a length)")
        pieces.append(piece)
    return b"".join(pieces)


async def _json_body(request, config: ServerConfig, empty=None):
    """The body as JSON: at most `max_request_mb`, strict JSON, at most MAX_JSON_DEPTH levels deep, every string
    valid Unicode. Anything else is a 4xx naming it. `empty`: the value of an empty body (None: refused)."""
    raw = await _body_bytes(request, config.max_request_mb)
    if empty is not None and not raw.strip():
        return empty
    try:
        body = json.loads(raw, parse_constant=_refuse_constant, parse_int=_parse_int)
    except RecursionError:
        raise APIError(400, f"the request body is nested too deeply (at most {MAX_JSON_DEPTH} levels of "
                       "lists and objects)", code="too_deep") from None
    except _BodyError as e:
        raise APIError(400, f"the request body has a value this server does not accept: {e}") from None
    except UnicodeDecodeError as e:
        raise APIError(400, f"the request body is not valid UTF-8 text: byte 0x{e.object[e.start]:02x} at "
                       f"position {e.start}") from None
    except ValueError as e:  # json.JSONDecodeError
        raise APIError(400, f"the request body is not valid JSON: {e}") from None
    _check_json(body)
    return body


def _check_json(body) -> None:
    """Walk the parsed body without recursion: refuse nesting deeper than MAX_JSON_DEPTH (later steps such as
    rendering `tools` recurse) and strings with an unpaired UTF-16 surrogate (`"\\ud800"` is valid JSON
    but not text: the tokenizer and file system reject it)."""
    if not isinstance(body, (dict, list)):
        return  # a bare value: parse_chat_request says the body must be an object
    stack = [(body, 1, None)]  # (value, depth, path as a linked list (key, parent))
    while stack:
        value, depth, path = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise APIError(400, f"the request body is nested too deeply (at most {MAX_JSON_DEPTH} levels of "
                           f"lists and objects; {_path(path)} is deeper)", param=_path(path), code="too_deep")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str) and not key.isascii() and _SURROGATE.search(key):
                _refuse_surrogate(key, (key, path))
            if isinstance(item, str):
                if not item.isascii() and _SURROGATE.search(item):
                    _refuse_surrogate(item, (key, path))
            elif isinstance(item, (dict, list)):
                stack.append((item, depth + 1, (key, path)))


def _path(path) -> str:
    """`messages[0].content` from the linked list that `_check_json` keeps."""
    keys = []
    while path is not None:
        key, path = path
        if isinstance(key, int):
            keys.append(f"[{key}]")
        else:  # an unpaired surrogate in a key is written as its escape
            keys.append("." + key.encode("utf-8", "backslashreplace").decode("utf-8"))
    return "".join(reversed(keys)).lstrip(".") or "the body"


def _refuse_surrogate(text: str, path) -> None:
    where = _path(path)
    code = ord(_SURROGATE.search(text).group())
    raise APIError(400, f"{where} holds an unpaired UTF-16 surrogate (\\u{code:04x}), which is not valid Unicode "
                   "text", param=where)


def _encode(engine: Engine, job: ChatJob):
    try:
        return engine.processor.encode(job.messages, tools=job.tools, think=job.params.think,
                                       add_generation_prompt=job.add_generation_prompt,
                                       continue_final_message=job.continue_final_message)
    except AudioError as e:
        raise APIError(400, str(e), param="messages", code="invalid_audio") from None
    except (MessageError, ConversationError) as e:
        raise APIError(400, str(e), param="messages") from None


async def _stream(scheduler: Scheduler, ticket: Ticket, head: dict, job: ChatJob, inline: bool):
    handle = ticket.request
    chunk = {**head, "object": "chat.completion.chunk"}
    choice = lambda j, delta, finish=None: {"index": j, "delta": delta, "logprobs": None, "finish_reason": finish}
    eos_ids = scheduler.engine.tokenizer.stop_ids
    finished = False
    closed = set()  # samples whose think block was closed in the inline stream
    try:
        yield _sse({**chunk, "choices": [choice(j, {"role": "assistant", "content": ""}) for j in range(job.params.n)]})
        while True:
            done = ticket.finished  # read before draining: no piece can come after it is set
            for j, kind, text in ticket.drain():
                if inline:
                    if kind == "answer" and handle.starts_in_reasoning and j not in closed:
                        closed.add(j)
                        text = REASONING_END + text  # the stream's reasoning and answer are edge-stripped
                    yield _sse({**chunk, "choices": [choice(j, {"content": text})]})
                else:
                    key = "content" if kind == "answer" else "reasoning_content"
                    yield _sse({**chunk, "choices": [choice(j, {key: text})]})
            if done:
                break
            await ticket.wait()
        finished = True
        if handle.error:
            yield _sse(APIError(500, handle.error).body())
        else:
            completions = scheduler.engine.completions(handle)
            for j, c in enumerate(completions):
                yield _sse({**chunk, "choices": [{**choice(j, {}, c.finish_reason),
                                                  "stop_reason": _stop_reason(c, eos_ids)}]})
            if job.include_usage:
                yield _sse({**chunk, "choices": [], "usage": _usage(completions, handle.prompt_tokens)})
        yield "data: [DONE]\n\n"
    finally:
        if not finished:  # the client went away (or the stream broke): free the rows
            scheduler.cancel(handle)


def load_engine(model_dir: str | Path, config: ServerConfig, max_batch_size: int = 32, adapter=None,
                quantize: str | None = None) -> tuple[Engine, ServerConfig]:
    """The engine for a checkpoint (its generation_config.json gives the sampling defaults), with an optional
    LoRA adapter merged and weight-only quantization applied at load."""
    engine = Engine.from_pretrained(model_dir, max_batch_size=max_batch_size, adapter=adapter, quantize=quantize,
                                    processor_kwargs={"max_audio_seconds": config.max_audio_seconds})
    return engine, config
