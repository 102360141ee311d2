"""An OpenAI-compatible server: `POST /v1/chat/completions` with audio, `GET /v1/models`, `GET /health`, and
the web page at `/`.

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


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                             413: "invalid_request_error", 500: "server_error"}.get(status, "invalid_request_error")

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
    """Steps the engine in one background thread while it has work, and wakes the waiting handlers."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._cv = threading.Condition()
        self._tickets: dict[int, Ticket] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="audior1-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join(timeout=10)

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

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stopping and not self.engine.busy:
                    self._cv.wait()
                if self._stopping:
                    return
            try:
                self.engine.step()
            except Exception:  # noqa: BLE001 - the engine isolates failures; this is the last line
                log.exception("engine step failed")
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
    if body.get("logprobs") or body.get("top_logprobs"):
        raise APIError(400, "logprobs are not supported", param="logprobs")
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
    if continue_final and clean[-1]["role"] != "assistant":
        raise APIError(400, "continue_final_message needs an assistant message last", param="continue_final_message")

    # Unset sampling settings fall back to the checkpoint's generation defaults (`defaults`).
    params = SamplingParams.resolve(
        defaults, max_tokens=max_tokens or config.max_tokens, temperature=temperature, top_p=top_p,
        top_k=max(top_k or 0, 0), repetition_penalty=penalty, n=n or 1, seed=seed, stop=stop or [],
        max_think_tokens=budget,
        think=think or continue_final,  # a continued prompt is used as given; the budget does the rest
        skip_special_tokens=True if skip_special is None else skip_special)
    if stop_ids or ignore_eos:
        params.stop_token_ids = list(stop_ids or [])
    return ChatJob(clean, params, bool(stream), bool(stream_options.get("include_usage")), continue_final,
                   True if add_prompt is None else add_prompt, tools, max_tokens is not None, ignore_eos)


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


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


# ---- the app -------------------------------------------------------------------------------------------

def create_app(engine: Engine, config: ServerConfig):
    """The FastAPI app over an engine. The scheduler thread starts and stops with the app's lifespan."""
    scheduler = Scheduler(engine)
    stop_ids = list(engine.tokenizer.stop_ids)

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
        return {**head, "object": "chat.completion",
                "choices": [{"index": j, "message": _message(c, handle, inline), "logprobs": None,
                             "finish_reason": c.finish_reason, "stop_reason": _stop_reason(c, stop_ids)}
                            for j, c in enumerate(completions)],
                "usage": _usage(completions, prompt_tokens)}

    return app


class _BodyError(ValueError):
    """A JSON value this server refuses while parsing (NaN, Infinity, an integer of too many digits)."""


def _refuse_constant(name: str):
    raise _BodyError(f"{name} is not a JSON value (JSON numbers are finite)")


def _parse_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _BodyError(f"an integer of {len(digits.lstrip('-'))} digits is too large "
                         f"(at most {MAX_INT_DIGITS} digits)")
    return int(digits)


async def _json_body(request, config: ServerConfig):
    """The body as JSON: at most `max_request_mb` (read in pieces, so a chunked upload is cut off too), strict
    JSON, at most MAX_JSON_DEPTH levels deep, every string valid Unicode. Anything else is a 4xx naming it."""
    limit = int(config.max_request_mb * 1024 * 1024)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise APIError(413, f"request body of {int(length)} bytes is over the limit of {limit} bytes")
    pieces, size = [], 0
    async for piece in request.stream():
        size += len(piece)
        if size > limit:
            raise APIError(413, f"request body is over the limit of {limit} bytes (streamed without a length)")
        pieces.append(piece)
    raw = b"".join(pieces)
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
