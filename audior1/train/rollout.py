"""Decoupled RL: rollouts from a separate inference server that the trainer keeps in sync (`rollout:` config).

At 33 B the colocated design (an unsharded inference copy on every trainer process) does not fit beside
FSDP2 training; the field's answer is a dedicated server that generates while the trainer trains, and a
weight push after every optimizer step. `RolloutServer` is the trainer's side of that, for audior1's own
server (`audior1 serve --enable-weight-updates`) and for vLLM, whose documented RL endpoints audior1's
server mirrors (`/pause`, `/resume`, `/start_weight_update`, `/update_weights`, `/finish_weight_update`).

Design choices
- Every process sends its own prompts (up to `concurrency` chat requests in flight), so the server batches
  all ranks' prompts together; a prompt's seed is the one colocated rollouts use, so the two modes sample
  from the same random numbers. Audio goes inline as base64 `input_audio` (what OpenAI-style audio servers
  take). The server returns token ids and log-probs (`return_token_ids`, `logprobs`); its prompt ids must be
  the trainer's own encoding (else the server serves another tokenizer or template: a loud error), and each
  completion is rebuilt from the token ids with the trainer's tokenizer (`completion_from_ids`, the engine's
  own rules), so rewards never depend on how a server formats text.
- The rollout policy's log-probs are the server's. The importance ratio's first minibatch, exp(trainer −
  server), is then ≈ 1 only when the weights really are in sync: its approx-KL (`approx_kl_first`) and the
  mean |server − trainer| gap (`rollout_logp_gap`) are logged every step as the check.
- Weight sync, after every `sync_every` optimizer steps (and before each evaluation), with the server paused:
  * `stream` (audior1): the weights are gathered from the FSDP shards one tensor at a time (a collective:
    every rank iterates) and rank 0 posts them in safetensors chunks of about `chunk_mb`, so no process ever
    holds more than one chunk and one gathered tensor — never an unsharded model. The first sync sends every
    tensor (the server may hold anything); later ones only those that train (`trainable`, or the LoRA-merged
    layers). Tensors go in the compute dtype.
  * `reload` (any server that can reload a checkpoint directory): rank 0 writes the merged weights in the
    official layout to `reload_dir/step-N` and the server reloads them — slower, and with `sync_every` K > 1
    the rollouts come from weights up to K − 1 steps old (`policy_lag`, logged).
  * `nccl` (vLLM's NCCL weight-transfer engine, `--weight-transfer-config '{"backend": "nccl"}'`): the same
    gathered tensors, broadcast by rank 0 into vLLM's workers. Written against vLLM's documented API; not run
    here (no GPU, no vLLM): docs/training.md says so.
- HTTP is the standard library's (urllib): no client dependency for a handful of JSON and binary posts.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from audior1.chat import THINK_END, IncrementalDecoder, split_reasoning
from audior1.engine import Completion, SamplingParams
from audior1.train import distributed, lora, state
from audior1.train.config import RLConfig, RolloutEndpoint
from audior1.train.distributed import full_state_items


class RolloutServerError(RuntimeError):
    """The rollout server refused a request or could not be reached (the message names the URL and why)."""


@dataclass
class SyncStats:
    """One weight sync, as the step's metrics log it."""

    seconds: float
    tensors: int
    megabytes: float
    version: str


# ---- completions from token ids -------------------------------------------------------------------------

def completion_from_ids(tokenizer, ids: list[int], prompt_tokens: int, finish_reason: str,
                        stop_reason: int | str | None = None, forced_positions: list[int] | None = None,
                        starts_in_reasoning: bool = True, skip_special_tokens: bool = False) -> Completion:
    """The `Completion` the engine would have reported for these generated ids (the stop token excluded): the
    text decoded token by token as the engine does, the reasoning counted up to the token that closes the
    think block, the reasoning and answer split by the engine's rule (`chat.split_reasoning`)."""
    decoder = IncrementalDecoder(tokenizer, skip_special_tokens=skip_special_tokens)
    text, reasoning, reasoning_tokens = "", starts_in_reasoning, 0
    for token in ids:
        if reasoning:
            reasoning_tokens += 1
        before = len(text)
        text += decoder.push(token)
        if reasoning and text.find(THINK_END, max(0, before - len(THINK_END) + 1)) >= 0:
            reasoning = False
    text += decoder.flush()
    split = split_reasoning(text, starts_in_reasoning)
    return Completion(text, split.reasoning, split.answer, list(ids), finish_reason, reasoning_tokens,
                      prompt_tokens, split.closed, stop_reason, list(forced_positions or []))


# ---- the client ------------------------------------------------------------------------------------------

class RolloutServer:
    """The trainer's connection to a rollout server: completions with log-probs, and weight syncs."""

    def __init__(self, cfg: RolloutEndpoint, tokenizer, d, out_dir: str | Path):
        self.cfg, self.tokenizer, self.d = cfg, tokenizer, d
        self.base = cfg.endpoint.rstrip("/")
        self.api_key = cfg.api_key or os.environ.get("AUDIOR1_API_KEY")
        self.reload_dir = Path(cfg.reload_dir or Path(out_dir) / "rollout-weights").resolve()
        self.synced_step: int | None = None  # the optimizer step whose weights the server holds
        self.model_name: str | None = None
        self._nccl_group = None
        self._pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="audior1-rollout")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- HTTP ----

    def _request(self, method: str, path: str, body: dict | bytes | None = None, query: dict | None = None,
                 timeout: float | None = None) -> dict:
        url = self.base + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        data = None
        if isinstance(body, bytes):
            data, headers["Content-Type"] = body, "application/octet-stream"
        elif body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.cfg.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")
            try:
                err = json.loads(detail).get("error", detail)
                detail = err.get("message", err) if isinstance(err, dict) else err
            except (ValueError, AttributeError):
                pass
            raise RolloutServerError(f"rollout server {method} {url}: HTTP {e.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise RolloutServerError(f"rollout server {method} {url}: cannot connect ({reason}); is it running "
                                     f"(audior1 serve --enable-weight-updates, or vLLM in dev mode)?") from None
        return json.loads(raw) if raw else {}

    def connect(self) -> str:
        """The served model's name (GET /v1/models); fails early, naming the URL, when nothing answers."""
        models = self._request("GET", "/v1/models", timeout=30).get("data") or []
        if not models:
            raise RolloutServerError(f"rollout server {self.base}/v1/models lists no model")
        self.model_name = models[0]["id"]
        return self.model_name

    # ---- completions ----

    @staticmethod
    def _audio_part(path: str) -> dict:
        """A local clip as base64 `input_audio`, read afresh for every request (no cache: a real prompt set's
        clips would not fit in memory, and reading one costs little beside generating from it)."""
        return {"type": "input_audio", "input_audio": {"data": base64.b64encode(Path(path).read_bytes()).decode(),
                                                       "format": Path(path).suffix.lstrip(".") or "wav"}}

    def _wire_messages(self, messages: list[dict]) -> list[dict]:
        """The engine's messages with every local audio file inlined as base64 `input_audio`."""
        out = []
        for m in messages:
            content = m["content"]
            if isinstance(content, list):
                content = [self._audio_part(p["audio"]) if p.get("type") == "audio" else p for p in content]
            out.append({**m, "content": content})
        return out

    def _body(self, messages: list[dict], sp: SamplingParams) -> dict:
        body = {"model": self.model_name, "messages": self._wire_messages(messages), "n": sp.n,
                "temperature": sp.temperature, "top_p": sp.top_p, "max_tokens": sp.max_tokens, "seed": sp.seed,
                "logprobs": True, "return_token_ids": True, "skip_special_tokens": sp.skip_special_tokens}
        if sp.max_think_tokens is not None:
            body["thinking_budget"] = sp.max_think_tokens
        if not sp.think:
            body["chat_template_kwargs"] = {"enable_thinking": False}
        return body

    def _one(self, messages: list[dict], sp: SamplingParams, expected: list[int] | None) -> list[Completion]:
        reply = self._request("POST", "/v1/chat/completions", self._body(messages, sp))
        prompt_ids = reply.get("prompt_token_ids")
        if prompt_ids is None:
            raise RolloutServerError(f"rollout server {self.base} returned no prompt_token_ids: it must support "
                                     "`return_token_ids` (audior1 serve, vLLM ≥ 0.10)")
        if expected is not None and list(prompt_ids) != list(expected):
            at = next((i for i, (a, b) in enumerate(zip(prompt_ids, expected)) if a != b),
                      min(len(prompt_ids), len(expected)))
            raise RolloutServerError(
                f"rollout server {self.base} encoded a prompt differently from the trainer ({len(prompt_ids)} "
                f"tokens vs {len(expected)}, first difference at token {at}): serve the same checkpoint's "
                "tokenizer and chat template")
        return [self._completion(c, len(prompt_ids), sp) for c in sorted(reply["choices"], key=lambda c: c["index"])]

    def _completion(self, choice: dict, prompt_tokens: int, sp: SamplingParams) -> Completion:
        ids = list(choice.get("token_ids") or [])
        content = (choice.get("logprobs") or {}).get("content")
        if content is None or len(content) != len(ids):
            raise RolloutServerError(f"rollout server {self.base} returned {0 if content is None else len(content)}"
                                     f" log-probs for {len(ids)} tokens: it must support `logprobs` per token")
        stop_ids = sp.stop_token_ids if sp.stop_token_ids is not None else self.tokenizer.stop_ids
        finish = choice.get("finish_reason") or "stop"
        stop_reason = None
        if finish == "stop" and ids and ids[-1] in stop_ids:
            stop_reason, ids = ids[-1], ids[:-1]  # the stop token: sampled and trained on, not part of the text
        if "forced_token_positions" not in choice and sp.max_think_tokens is not None:
            raise RolloutServerError(f"rollout server {self.base} does not report forced_token_positions, so a "
                                     "thinking budget (max_think_tokens) cannot be used with it")
        c = completion_from_ids(self.tokenizer, ids, prompt_tokens, finish, stop_reason,
                                choice.get("forced_token_positions") or [], sp.think, sp.skip_special_tokens)
        c.logprobs = [float(x["logprob"]) for x in content]
        return c

    def complete(self, prompts: list[list[dict]], params: list[SamplingParams],
                 expected: list[list[int]] | None = None) -> list[list[Completion]]:
        """Completions of this process's prompts (chat messages with local audio paths), `concurrency` requests
        at a time; each completion carries `logprobs` (its tokens', then the stop token's)."""
        if self.model_name is None:
            self.connect()
        futures = [self._pool.submit(self._one, m, sp, expected[i] if expected else None)
                   for i, (m, sp) in enumerate(zip(prompts, params))]
        return [f.result() for f in futures]

    # ---- weight sync ----

    def due(self, step: int, cfg: RLConfig) -> bool:
        """Whether the weights go out after optimizer step `step`: every `sync_every` steps, and before every
        evaluation and the last step (so evaluations and the final numbers never use stale weights)."""
        from audior1.train.run import due

        return (step % self.cfg.sync_every == 0 or due(step, cfg.eval_every, cfg.max_steps)
                or step >= cfg.max_steps)

    def lag(self, step: int) -> int:
        """Optimizer steps between the policy being trained and the weights the rollouts came from."""
        return step - (self.synced_step or 0)

    def sync(self, model: torch.nn.Module, step: int, compute_dtype: torch.dtype, everything: bool = False) -> SyncStats:
        """Push the trainer's weights to the server (a collective: every process calls it). `everything`: every
        tensor (the first sync); else only the ones that train."""
        t0 = time.perf_counter()
        # a reload reads a whole checkpoint: every tensor; a stream or broadcast only needs what trains
        only = None if everything or self.cfg.sync == "reload" else _changing(model)
        items = _plain_items(model, only, compute_dtype)
        version = f"step-{step}"
        push = {"stream": lambda: self._stream(items, version),
                "reload": lambda: self._reload(model, items, version, compute_dtype),
                "nccl": lambda: self._nccl(model, items, version, only, compute_dtype)}[self.cfg.sync]
        error, (tensors, mb) = None, (0, 0.0)
        try:
            tensors, mb = push()
        except Exception as e:  # noqa: BLE001 - reported to every process below, once the gathers are done
            error = e
        for _ in items:  # what a failed push left: the other processes are still gathering it
            pass

        def report():
            if error is not None:
                raise error

        distributed.agree(self.d, report)  # one process's failure fails all of them, none left waiting
        self.synced_step = step  # (agree is a collective: nobody asks for rollouts before the server resumed)
        return SyncStats(time.perf_counter() - t0, tensors, mb, version)

    @contextlib.contextmanager
    def _paused(self):
        """The server paused (`mode=wait`: nothing is in flight between steps anyway) while the weights change;
        resumed only if the change went through (a failed update leaves it paused, never serving mixed weights)."""
        self._request("POST", "/pause", query={"mode": "wait"})
        yield
        self._request("POST", "/resume")

    def _stream(self, items, version: str) -> tuple[int, float]:
        """audior1: safetensors chunks over HTTP between /start_weight_update and /finish_weight_update."""
        from safetensors.torch import save

        if not self.d.main:
            for _ in items:
                pass
            return 0, 0.0
        limit, chunk, size, total, count = self.cfg.chunk_mb * 2**20, {}, 0, 0, 0
        with self._paused():
            self._request("POST", "/start_weight_update", {})
            for name, t in items:
                chunk[name] = t.contiguous().cpu()
                size += t.numel() * t.element_size()
                if size >= limit:
                    self._request("POST", "/update_weights", save(chunk))
                    total, count, chunk, size = total + size, count + len(chunk), {}, 0
            if chunk:
                self._request("POST", "/update_weights", save(chunk))
                total, count = total + size, count + len(chunk)
            self._request("POST", "/finish_weight_update", {"weight_version": version})
        return count, total / 2**20

    def _reload(self, model, items, version: str, dtype: torch.dtype) -> tuple[int, float]:
        """Any server that reloads a directory: rank 0 writes the weights in the official layout (atomically:
        a temporary name, then renamed), the server reloads them, the previous directory is removed."""
        final = self.reload_dir / version
        tmp = final.with_name(f".tmp-{version}")
        if self.d.main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        state.write_model(tmp, self.d, model, self.tokenizer, items, dtype=dtype)
        if not self.d.main:
            return 0, 0.0
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        with self._paused():
            reply = self._request("POST", "/reload_weights", {"path": str(final), "weight_version": version})
        for old in self.reload_dir.glob("step-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        mb = sum(f.stat().st_size for f in final.glob("*.safetensors")) / 2**20
        return int(reply.get("tensors", 0)), mb

    def _nccl(self, model, items, version: str, only, dtype: torch.dtype) -> tuple[int, float]:
        """vLLM's NCCL weight transfer (docs: training/weight_transfer): rank 0 joins vLLM's workers in a NCCL
        group once, then per sync announces names/dtypes/shapes and broadcasts the gathered tensors. Not run
        here (no GPU, no vLLM)."""
        from vllm.distributed.weight_transfer.nccl_engine import (  # noqa: PLC0415 - vLLM only on GPU hosts
            NCCLTrainerSendWeightsArgs, NCCLWeightTransferEngine)

        meta = list(_plain_meta(model, only, dtype))
        if not self.d.main:
            for _ in items:
                pass
            return 0, 0.0
        if self._nccl_group is None:
            world = int(self._request("GET", "/get_world_size")["world_size"]) + 1
            init = {"master_address": os.environ.get("MASTER_ADDR", "127.0.0.1"), "master_port": self.cfg.nccl_port,
                    "rank_offset": 1, "world_size": world}
            t = threading.Thread(target=self._request, args=("POST", "/init_weight_transfer_engine",
                                                             {"init_info": init}))
            t.start()
            self._nccl_group = NCCLWeightTransferEngine.trainer_init(
                {k: init[k] for k in ("master_address", "master_port", "world_size")})
            t.join()
        info = {"names": [n for n, _ in meta], "dtype_names": [str(d).removeprefix("torch.") for _, (d, _) in meta],
                "shapes": [list(s) for _, (_, s) in meta], "packed": True}
        with self._paused():
            self._request("POST", "/start_weight_update", {"is_checkpoint_format": True})
            t = threading.Thread(target=self._request, args=("POST", "/update_weights", {"update_info": info}))
            t.start()
            NCCLWeightTransferEngine.trainer_send_weights(
                iterator=items, trainer_args=NCCLTrainerSendWeightsArgs(group=self._nccl_group, packed=True))
            t.join()
            self._request("POST", "/finish_weight_update", {"weight_version": version})
        mb = sum(torch.Size(s).numel() * torch.empty((), dtype=d).element_size() for _, (d, s) in meta) / 2**20
        return len(meta), mb


# ---- what the weights are, as a plain model holds them ----------------------------------------------------

def _changing(model: torch.nn.Module):
    """A filter on checkpoint names: the tensors an optimizer step can change (trainable parameters; for a
    LoRA-wrapped layer, its merged weight)."""
    names = set()
    for name, p in model.named_parameters():
        if p.requires_grad:
            names.add(name.split(lora.LORA_MARK)[0] + ".weight" if lora.is_lora_param(name) else name)
    return lambda n: n in names


def _plain_items(model: torch.nn.Module, only, dtype: torch.dtype):
    """(checkpoint name, full tensor in `dtype`) one gathered tensor at a time (a collective under FSDP)."""
    items = lora.merged_state_items(model, only) if lora.has_lora(model) else full_state_items(model, only)
    for name, t in items:
        yield name, t.to(dtype) if t.is_floating_point() else t


def _plain_meta(model: torch.nn.Module, only, dtype: torch.dtype):
    """(checkpoint name, (dtype, global shape)) of what `_plain_items` yields, without gathering anything."""
    for name, t in model.state_dict().items():
        if lora.is_lora_param(name):
            continue
        plain = name.replace(".base_layer.", ".")
        if only is None or only(plain):
            yield plain, (dtype if t.is_floating_point() else t.dtype, tuple(t.shape))


def connect(cfg: RLConfig, tokenizer, d) -> RolloutServer | None:
    """The rollout server of a decoupled run (None when colocated), connected."""
    if not cfg.rollout.enabled:
        return None
    server = RolloutServer(cfg.rollout, tokenizer, d, cfg.out_dir)
    server.connect()
    return server


__all__ = ["RolloutServer", "RolloutServerError", "SyncStats", "completion_from_ids", "connect"]
