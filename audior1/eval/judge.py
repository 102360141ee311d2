"""LLM judges over any OpenAI-compatible endpoint, with replaceable prompt files and an on-disk cache.

Design choices:
- The prompt is a text file with `{placeholders}` (defaults in `audior1/eval/prompts/`); users can pass their
  own file (e.g. the exact prompt an evaluator published). Only known placeholders are substituted, so
  braces elsewhere in a prompt are left alone. Its SHA-256 is recorded with every result.
- Every reply is cached on disk under a key of (judge model, prompt hash, rendered prompt, run index,
  temperature, max tokens): re-running a report, resuming a run or re-scoring costs no judge calls, and
  run r of an item is always the same reply. One file per key, written atomically (thread-safe).
- Several runs per item (Big Bench Audio: 3) are separate requests with distinct run indices.
"""

from __future__ import annotations

import json
import os
import time
from importlib import resources
from pathlib import Path

import httpx

from audior1.eval.backends import chat_url, check_endpoint, post_json
from audior1.eval.items import sha256_text


def default_prompt(name: str) -> Path:
    """Path of a shipped prompt file, e.g. `default_prompt("big_bench_audio_judge.txt")`."""
    return Path(str(resources.files("audior1.eval") / "prompts" / name))


def default_cache_dir() -> Path:
    return Path(os.environ.get("AUDIOR1_CACHE", Path.home() / ".cache" / "audior1")) / "judge"


class Judge:
    def __init__(self, endpoint: str, model: str, prompt_file: str | Path, *, runs: int = 1,
                 temperature: float = 0.0, max_tokens: int = 1024, cache_dir: str | Path | None = None,
                 api_key: str | None = None, concurrency: int = 4, timeout: float = 300.0, retries: int = 4,
                 backoff: float = 2.0):
        self.url, self.model = chat_url(endpoint), model
        self.prompt_file = Path(prompt_file)
        self.template = self.prompt_file.read_text(encoding="utf-8")
        self.prompt_sha256 = sha256_text(self.template)
        self.runs, self.temperature, self.max_tokens = runs, temperature, max_tokens
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.concurrency, self.timeout, self.retries, self.backoff = concurrency, timeout, retries, backoff
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(headers=headers, limits=httpx.Limits(max_connections=concurrency + 2))
        self.calls = 0          # requests actually sent (cache misses)

    def describe(self) -> dict:
        return {"endpoint": self.url, "model": self.model, "prompt_file": str(self.prompt_file),
                "prompt_sha256": self.prompt_sha256, "runs": self.runs, "temperature": self.temperature,
                "max_tokens": self.max_tokens}

    def check(self) -> None:
        check_endpoint(self.client, self.url)

    def render(self, **fields: str) -> str:
        text = self.template
        for k, v in fields.items():
            text = text.replace("{" + k + "}", str(v))
        return text

    def _cache_path(self, prompt: str, run: int) -> Path:
        key = sha256_text(json.dumps([self.model, self.prompt_sha256, prompt, run, self.temperature,
                                      self.max_tokens], ensure_ascii=False))
        return self.cache_dir / key[:2] / f"{key}.json"

    def ask(self, prompt: str, run: int = 0) -> str:
        path = self._cache_path(prompt, run)
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))["reply"]
            except (ValueError, KeyError):
                pass                                  # a damaged entry is simply asked again
        payload = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                   "temperature": self.temperature, "max_tokens": self.max_tokens}
        data = post_json(self.client, self.url, payload, retries=self.retries, backoff=self.backoff,
                         timeout=self.timeout)
        self.calls += 1
        reply = ((data.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{time.monotonic_ns()}.tmp")
        tmp.write_text(json.dumps({"reply": reply, "model": self.model, "run": run,
                                   "prompt_sha256": self.prompt_sha256}, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
        return reply

    def ask_runs(self, **fields: str) -> list[str]:
        """All runs for one item (cached replies are reused)."""
        prompt = self.render(**fields)
        return [self.ask(prompt, r) for r in range(self.runs)]

    def close(self) -> None:
        self.client.close()


# ---------------------------------------------------------------------------------------------------------
# The refusal judge: what audior1.data.refusal's patterns miss
# ---------------------------------------------------------------------------------------------------------


class JudgeReplyError(ValueError):
    """A judge replied something other than the exact words its prompt asks for."""


def refusal_judge(texts: list[str], endpoint: str, model: str, api_key: str | None = None, *,
                  cache_dir: str | Path | None = None, concurrency: int = 4, max_tokens: int = 16,
                  timeout: float = 120.0, retries: int = 4) -> list[bool]:
    """Is each text a refusal or wrong self-cognition ("I cannot hear audio", "as a text-based model…")?

    Texts `audior1.data.refusal` flags are True without a call; only the rest are asked of the judge model
    at `endpoint` (any OpenAI-compatible server), with the fixed prompt `eval/prompts/refusal_judge.txt` at
    temperature 0. Its reply must be exactly YES or NO (surrounding whitespace aside); anything else raises
    `JudgeReplyError` naming the reply. Replies are cached like every judge's (`cache_dir`)."""
    from concurrent.futures import ThreadPoolExecutor

    from audior1.data.refusal import is_refusal

    flags = [is_refusal(t) for t in texts]
    todo = [i for i, f in enumerate(flags) if not f]
    if not todo:
        return flags
    judge = Judge(endpoint, model, default_prompt("refusal_judge.txt"), max_tokens=max_tokens,
                  cache_dir=cache_dir, api_key=api_key, concurrency=concurrency, timeout=timeout, retries=retries)
    try:
        judge.check()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            replies = list(pool.map(lambda i: judge.ask(judge.render(text=texts[i])), todo))
    finally:
        judge.close()
    for i, reply in zip(todo, replies):
        verdict = reply.strip()
        if verdict not in ("YES", "NO"):
            raise JudgeReplyError(f"refusal judge {model} at {judge.url} replied {reply!r} to text {i}, "
                                  f"expected exactly YES or NO (the reply is cached under {judge.cache_dir})")
        flags[i] = verdict == "YES"
    return flags
