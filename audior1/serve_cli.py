"""`audior1 ask` (one question about audio, streamed to the terminal) and `audior1 serve` (the HTTP server).

Design choices
- `ask` checks and decodes the audio before it loads any weights, so a bad file fails at once with one line
  naming it (exit 2, through the CLI's user-error handling).
- The reasoning is streamed visibly apart from the answer: dimmed under a `thinking` rule on a terminal,
  between `[reasoning]` / `[answer]` markers otherwise. `--json` prints one object instead (reasoning,
  answer, token counts, timings).
- Multiple-choice questions use the official prompt (`chat.mcq_prompt`): the question, the fixed instruction,
  then `A. …` lines; text first, then the audio, as StepFun's examples do. Audio over 25 s is cut into
  25 s chunks by the processor, each its own audio item in the prompt.
- Sampling defaults come from the checkpoint's generation_config.json (`SamplingParams.resolve`; audior1's
  checkpoints carry the official 0.7 / 0.9); flags override them.
- `serve --enable-weight-updates` (the RL endpoints: any client may then replace the weights) is refused
  before any weight is read when the server would listen beyond loopback without an API key, or with
  `--quantize` (a quantized model cannot take float weights in place).
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import time
from pathlib import Path

from audior1.chat import mcq_prompt


def _fail(message: str, code: int = 2, command: str = "ask"):
    print(f"audior1 {command}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server to this machine (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def build_messages(audio: list[str], question: str | None, choices: list[str], system: str | None) -> list[dict]:
    text = mcq_prompt(question or "", choices) if choices else question
    content = ([{"type": "text", "text": text}] if text else []) + [{"type": "audio", "audio": a} for a in audio]
    if not content:
        _fail("give at least an audio file or a question")
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": content}]


class _Printer:
    """Streams pieces to stdout with the reasoning set apart from the answer."""

    def __init__(self, out=sys.stdout):
        self.out, self.tty = out, out.isatty() and os.environ.get("NO_COLOR") is None
        self.kind = None

    def __call__(self, request_id: int, index: int, kind: str, text: str) -> None:
        if kind != self.kind:
            if self.kind is not None:
                self.out.write("\n")
            if self.tty:
                self.out.write("\033[2m── thinking ──\033[0m\n" if kind == "reasoning" else "\033[1m── answer ──\033[0m\n")
            else:
                self.out.write(f"[{kind}]\n")
            self.kind = kind
        self.out.write(f"\033[2;3m{text}\033[0m" if self.tty and kind == "reasoning" else text)
        self.out.flush()

    def close(self, completion) -> None:
        if self.kind != "answer":
            if self.kind is not None:
                self.out.write("\n")
            note = "the token limit was reached while thinking" if completion.finish_reason == "length" else "empty"
            self.out.write(("\033[1m── answer ──\033[0m\n" if self.tty else "[answer]\n") + f"({note})")
        self.out.write("\n")
        self.out.flush()


def cmd_ask(args) -> None:
    import torch

    from audior1.checkpoint import generation_defaults, load_model
    from audior1.engine import Engine, SamplingParams
    from audior1.processor import Processor

    t0 = time.perf_counter()
    items = list(args.inputs)
    question = None
    if items and not Path(items[-1]).is_file():
        question = items.pop()
    model_dir = Path(args.model)
    processor = Processor.from_pretrained(model_dir)
    params = SamplingParams.resolve(
        generation_defaults(model_dir), max_tokens=args.max_tokens, seed=args.seed, think=not args.no_think,
        max_think_tokens=args.think_budget, temperature=args.temperature, top_p=args.top_p,
        repetition_penalty=args.repetition_penalty)
    try:
        params.validate()
    except ValueError as e:
        _fail(str(e))
    messages = build_messages(items, question, args.choice, args.system)
    encoded = processor.encode(messages, think=params.think)  # decodes the audio: bad files fail here
    t_encoded = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    engine = Engine(load_model(model_dir, adapter=args.adapter, quantize=args.quantize), processor)
    t_loaded = time.perf_counter()
    printer = None if args.json else _Printer()
    try:
        request = engine.add(encoded, params, printer)
    except ValueError as e:  # prompt + max_tokens over the context
        _fail(str(e))
    while not request.done.is_set():
        engine.step()
    if request.error:
        _fail(f"generation failed: {request.error}", code=1)
    [c] = engine.completions(request)
    if printer is not None:
        printer.close(c)
        return
    gen_s = request.finished_at - request.submitted
    print(json.dumps({
        "model": str(model_dir), "audio": items, "question": question, "choices": args.choice or None,
        "reasoning": c.reasoning, "answer": c.answer, "think_closed": c.think_closed,
        "finish_reason": c.finish_reason,
        "tokens": {"prompt": c.prompt_tokens, "completion": c.completion_tokens, "reasoning": c.reasoning_tokens,
                   "answer": c.completion_tokens - c.reasoning_tokens,
                   "audio": encoded.num_audio_tokens},
        "timings_s": {"encode_audio": round(t_encoded - t0, 4), "load_model": round(t_loaded - t_encoded, 4),
                      "time_to_first_token": round((request.first_token_at or request.finished_at) - request.submitted, 4),
                      "generate": round(gen_s, 4),
                      "tokens_per_s": round(c.completion_tokens / gen_s, 1) if gen_s > 0 else None},
        "sampling": {"temperature": params.temperature, "top_p": params.top_p, "max_tokens": params.max_tokens,
                     "think": params.think, "max_think_tokens": params.max_think_tokens, "seed": params.seed},
    }, ensure_ascii=False, indent=2))


def cmd_serve(args) -> None:
    import logging

    from audior1.server import ServerConfig, create_app, load_engine

    import uvicorn

    api_key = args.api_key or os.environ.get("AUDIOR1_API_KEY") or None
    if args.enable_weight_updates:
        _check_weight_updates(args, api_key)
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO), format="%(levelname)s %(name)s: %(message)s")
    if not is_loopback(args.host) and not api_key:
        print(f"audior1 serve: warning: listening on {args.host} without an API key (--api-key)", file=sys.stderr)
    allow = None
    if args.allow_local_audio:
        allow = Path(args.allow_local_audio).resolve()
        if not allow.is_dir():
            raise NotADirectoryError(f"--allow-local-audio {args.allow_local_audio}: not a directory")
    config = ServerConfig(model_name=args.served_model_name or _default_name(args.model), api_key=api_key,
                          max_audio_seconds=args.max_audio_seconds, max_audio_parts=args.max_audio_parts,
                          max_n=args.max_n, max_tokens=args.max_tokens, allow_local_audio=allow,
                          reasoning_format=args.reasoning_format, enable_weight_updates=args.enable_weight_updates,
                          max_weight_chunk_mb=args.max_weight_chunk_mb)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    engine, config = load_engine(args.model, config, max_batch_size=args.max_batch_size, adapter=args.adapter,
                                 quantize=args.quantize)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"audior1 serve: {config.model_name} at http://{host}:{args.port}/ (web page) and "
          f"http://{host}:{args.port}/v1 (OpenAI API){' — API key required' if api_key else ''}"
          f"{'; RL weight updates enabled (/pause, /update_weights, …)' if args.enable_weight_updates else ''}",
          file=sys.stderr)
    uvicorn.run(create_app(engine, config), host=args.host, port=args.port, log_level=args.log_level)


def _check_weight_updates(args, api_key: str | None) -> None:
    """Refuse --enable-weight-updates where it is unsafe or cannot work, before anything is loaded."""
    if not is_loopback(args.host) and not api_key:
        _fail(f"--enable-weight-updates lets a client replace the model's weights; listening on {args.host} "
              "(beyond this machine) it needs --api-key KEY (or AUDIOR1_API_KEY)", command="serve")
    if args.quantize:
        _fail(f"--enable-weight-updates cannot be used with --quantize {args.quantize}: a quantized model's weights "
              "are packed copies that new float weights cannot be copied into; serve it unquantized for RL "
              "rollouts", command="serve")


def _default_name(model: str) -> str:
    """The served name when none is given: the directory's name, or a Hub id's repository name."""
    path = Path(model)
    return path.resolve().name if path.exists() else model.partition("@")[0].rsplit("/", 1)[-1]


def add_model_options(p) -> None:
    """--model, --adapter, --quantize: how `ask` and `serve` name and load the weights."""
    p.add_argument("--model", required=True, metavar="DIR|ID", help="checkpoint directory, LoRA adapter directory "
                   "(loaded over its base) or Hub id org/name[@revision]")
    p.add_argument("--adapter", default=None, metavar="DIR", help="a LoRA adapter (peft format) merged into the "
                   "weights at load")
    p.add_argument("--quantize", default=None, metavar="KIND", help="weight-only quantization at load: int8, or "
                   "int4 (CUDA only); see docs/serving.md")


def register(subparsers) -> None:
    p = subparsers.add_parser("ask", help="ask a question about audio; streams the reasoning, then the answer",
                              usage="%(prog)s --model DIR AUDIO... [QUESTION] [--choice TEXT ...] "
                              "[--no-think | --think-budget N] [--temperature T] [--json] [options]",
                              description="Ask the model about one or more audio files. The last argument is the "
                              "question (omit it to send audio only). Example: audior1 ask --model runs/demo "
                              "clip.wav 'How many beeps?' --choice two --choice three")
    add_model_options(p)
    p.add_argument("inputs", nargs="+", metavar="AUDIO... QUESTION", help="audio files (WAV, FLAC, OGG, MP3; any "
                   "length: cut into 25 s chunks), then the question")
    p.add_argument("--choice", action="append", default=[], metavar="TEXT",
                   help="an answer option (repeat): uses the official multiple-choice prompt")
    think = p.add_mutually_exclusive_group()
    think.add_argument("--no-think", action="store_true", help="answer directly (empty think block)")
    think.add_argument("--think-budget", type=int, default=None, metavar="N",
                       help="close the reasoning after N tokens and let the model answer")
    p.add_argument("--temperature", type=float, default=None, help="default: the checkpoint's (0.7); 0 = greedy")
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--repetition-penalty", type=float, default=None)
    p.add_argument("--max-tokens", type=int, default=2048, help="new tokens, reasoning included")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--system", default=None, help="a system message")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", action="store_true", help="print reasoning, answer, token counts and timings as JSON")
    p.set_defaults(func=cmd_ask)

    p = subparsers.add_parser("serve", help="serve a checkpoint over an OpenAI-compatible HTTP API and a web page",
                              description="OpenAI-compatible /v1/chat/completions with audio input and streamed "
                              "reasoning, /v1/models, /health, and a web page at /. Binds 127.0.0.1 unless told.")
    add_model_options(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (or set AUDIOR1_API_KEY)")
    p.add_argument("--served-model-name", default=None, help="the model id clients use (default: the directory name)")
    p.add_argument("--max-audio-seconds", type=float, default=600.0, help="longest accepted audio item")
    p.add_argument("--max-audio-parts", type=int, default=32, help="most audio parts in one request")
    p.add_argument("--max-n", type=int, default=16, help="largest n (samples per request)")
    p.add_argument("--max-tokens", type=int, default=4096, help="new tokens when a request does not say")
    p.add_argument("--max-batch-size", type=int, default=32, help="rows decoded together")
    p.add_argument("--allow-local-audio", default=None, metavar="DIR",
                   help="let requests name audio files, but only inside DIR")
    p.add_argument("--reasoning-format", choices=["split", "inline"], default="split",
                   help="split: reasoning in reasoning_content (vLLM style); inline: all in content (StepFun's vLLM)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--enable-weight-updates", action="store_true",
                   help="RL rollout engine: /pause, /resume, /update_weights, /reload_weights, … (vLLM's names); "
                   "needs --api-key unless the host is loopback; see docs/serving.md")
    p.add_argument("--max-weight-chunk-mb", type=float, default=4096.0, metavar="MB",
                   help="largest /update_weights body (send bigger models in several chunks)")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=cmd_serve)
