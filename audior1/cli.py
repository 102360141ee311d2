"""The `audior1` command: thin argument parsing that calls into the modules.

Each subcommand is a small function `cmd_<name>(args)`; command groups owned by a sub-package
(`data`, `eval`, …) register themselves through that package's `cli.register(subparsers)`. Errors that
come from bad input (files, configs, audio) are printed as one line and exit with status 2, never as a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from audior1 import __version__

# Command groups that live in sub-packages; each module has register(subparsers).
COMMAND_GROUPS = ("audior1.data.cli", "audior1.eval.cli", "audior1.serve_cli", "audior1.train.cli",
                  "audior1.mgrd.cli")


def torch_device(name: str):
    import torch

    return torch.device(name)


def cmd_init(args) -> None:
    from audior1.checkpoint import init_checkpoint, meta_summary
    from audior1.config import preset

    if args.meta:
        if args.quantize:
            from audior1.quantize import check

            check(args.quantize, torch_device("cuda"))  # an unknown kind fails first; int4 is counted for CUDA
        s = meta_summary(preset(args.preset))
        print(f"{args.preset}: {s.billions:.2f} B parameters, {s.tensors} tensors, "
              f"{s.bytes / 1e9:.2f} GB in {s.dtype} (meta device: nothing allocated)")
        if args.quantize:
            from audior1.checkpoint import meta_shapes
            from audior1.quantize import quantized_bytes

            q = quantized_bytes(meta_shapes(preset(args.preset)), args.quantize, s.bytes // s.parameters)
            print(f"with --quantize {args.quantize}: {q / 1e9:.2f} GB of weights ({s.bytes / q:.2f}× less; decoder "
                  f"linear layers {args.quantize} weight-only, embedding, head, norms and audio encoder in {s.dtype})")
        return
    if args.quantize:
        raise SystemExit("audior1 init: --quantize only counts, with --meta (weights are quantized at load: "
                         "ask/serve/eval --quantize)")
    if args.out_dir is None:
        raise SystemExit("audior1 init: OUT_DIR is required unless --meta is given")
    s = init_checkpoint(args.preset, args.out_dir, seed=args.seed, dtype=args.dtype,
                        max_shard_bytes=int(args.max_shard_gb * 1024**3), text_think_markers=args.text_think_markers)
    print(f"wrote {args.out_dir}: preset {args.preset}, {s.parameters:,} parameters, {s.tensors} tensors, "
          f"{s.shards} shard(s), {s.dtype}, seed {args.seed}")


def cmd_info(args) -> None:
    from audior1.checkpoint import summarize

    config, s, parts = summarize(args.model_dir)
    t, a = config.text, config.audio
    if args.json:
        print(json.dumps({"parameters": s.parameters, "tensors": s.tensors, "bytes": s.bytes, "dtype": s.dtype,
                          "shards": s.shards, "parts": parts, "config": config.to_dict()}, indent=2))
        return
    print(f"model      {args.model_dir}")
    print(f"decoder    {t.num_hidden_layers} layers, hidden {t.hidden_size}, heads {t.num_attention_heads}/"
          f"{t.num_key_value_heads} kv, MLP {t.intermediate_size}, vocab {t.vocab_size}, rope θ {t.rope_theta:g}, "
          f"max positions {t.max_position_embeddings}")
    print(f"encoder    {a.n_audio_layer} blocks, width {a.n_audio_state}, heads {a.n_audio_head}, {a.n_mels} mels, "
          f"{a.n_audio_ctx} positions; adapter → {a.llm_dim}")
    print(f"weights    {s.parameters:,} parameters ({s.billions:.2f} B), {s.tensors} tensors, dtype {s.dtype}, "
          f"{s.shards} shard(s), {s.bytes / 1e6:,.1f} MB")
    print("parts      " + ", ".join(f"{k} {v:,}" for k, v in sorted(parts.items())))
    print(f"ids        <audio_patch> {config.audio_patch_token_id}, eos {t.eos_token_id}")


def cmd_convert(args) -> None:
    from audior1.checkpoint import convert

    stats = convert(args.encoder_from, args.lm_from, args.out_dir, vocab_size=args.vocab_size, dtype=args.dtype,
                    seed=args.seed, max_shard_bytes=int(args.max_shard_gb * 1024**3))
    print(f"wrote {args.out_dir}: {stats['tensors']} tensors in {stats['shards']} shard(s), "
          f"{stats['total_bytes'] / 1e6:,.1f} MB (encoder from {args.encoder_from}, LM from {args.lm_from}, fresh adapter)")


def cmd_lora_merge(args) -> None:
    from audior1.checkpoint import merge_adapter

    stats = merge_adapter(args.base, args.adapter, args.out_dir, max_shard_bytes=int(args.max_shard_gb * 1024**3))
    print(f"wrote {args.out_dir}: {stats['tensors']} tensors in {stats['shards']} shard(s), "
          f"{stats['total_bytes'] / 1e6:,.1f} MB ({args.base} + {' + '.join(stats['adapters'])}, merged)")


def cmd_features(args) -> None:
    from audior1 import audio

    feats = audio.featurize(args.audio, convention=args.convention)
    print(f"audio      {feats.source}: {feats.duration:.2f} s → {len(feats.mels)} chunk(s) of ≤ 25 s")
    for i, (mel, length, n) in enumerate(zip(feats.mels, feats.mel_lengths, feats.num_tokens)):
        print(f"chunk {i}    log-mel {list(mel.shape)}, encoder length {length}, {n} audio tokens "
              f"(range {mel.min():.2f} … {mel.max():.2f})")
    print(f"tokens     {feats.total_tokens} <audio_patch> in total ({args.convention} convention)")
    if args.model:
        from audior1.processor import Processor

        processor = Processor.from_pretrained(args.model, convention=args.convention)
        messages = [{"role": "user", "content": [{"type": "text", "text": args.question},
                                                 {"type": "audio", "audio": args.audio}]}]
        enc = processor.encode(messages)
        text = processor.tokenizer.decode(enc.input_ids)
        print(f"prompt     {len(enc.input_ids)} tokens:")
        print("  " + _abbreviate_patches(text).replace("\n", "\\n"))


def _abbreviate_patches(text: str) -> str:
    import re

    return re.sub(r"(?:<audio_patch>)+", lambda m: f"<audio_patch>×{m.group(0).count('<audio_patch>')}", text)


def cmd_quickstart(args) -> None:
    from audior1.quickstart import run

    run(Path(args.out), resume=args.resume, seed=args.seed, steps=args.steps, rounds=args.rounds,
        rl_steps=args.rl_steps, n_per_task=args.n_per_task, eval_items=args.eval_items, max_tokens=args.max_tokens)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audior1", description="Step-Audio-R1 and MGRD: run, train and evaluate "
                                     "audio reasoning models.")
    parser.add_argument("--version", action="version", version=f"audior1 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("init", help="write a randomly initialised checkpoint in the official layout")
    p.add_argument("--preset", required=True, help="tiny | demo | step-audio-2-mini | step-audio-r1")
    p.add_argument("out_dir", nargs="?", metavar="OUT_DIR")
    p.add_argument("--meta", action="store_true", help="only count parameters/tensors (allocates nothing)")
    p.add_argument("--quantize", default=None, metavar="KIND", help="with --meta: also print the weights' size "
                   "with int8 or int4 weight-only quantization of the decoder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: the preset's)")
    p.add_argument("--max-shard-gb", type=float, default=5.0)
    p.add_argument("--text-think-markers", action="store_true",
                   help="tiny/demo: write <think>/</think> as multi-token text, as the released tokenizer does "
                        "(the official presets always do; default for tiny/demo: one token each)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("info", help="summarise a checkpoint directory (config, counts, dtype, shards)")
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("convert", help="assemble a Step-Audio-R1-shaped checkpoint from a Qwen2-Audio encoder "
                       "and a Qwen2.5 LM")
    p.add_argument("--encoder-from", required=True, metavar="QWEN2_AUDIO_DIR")
    p.add_argument("--lm-from", required=True, metavar="QWEN2_5_DIR")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--vocab-size", type=int, default=158720)
    p.add_argument("--dtype", default=None)
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh adapter")
    p.add_argument("--max-shard-gb", type=float, default=5.0)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("lora", help="LoRA adapters (peft format): merge one into its base")
    lsub = p.add_subparsers(dest="lora_command", metavar="{merge}", required=True)
    m = lsub.add_parser("merge", help="write base + adapter as a full checkpoint in the official layout (streamed: "
                        "one tensor at a time)")
    m.add_argument("base", metavar="BASE", help="the base checkpoint directory or Hub id")
    m.add_argument("adapter", metavar="ADAPTER", help="the adapter directory (adapter_config.json + "
                   "adapter_model.safetensors)")
    m.add_argument("out_dir", metavar="OUT")
    m.add_argument("--max-shard-gb", type=float, default=5.0)
    m.set_defaults(func=cmd_lora_merge)

    p = sub.add_parser("features", help="show the log-mel chunks and audio-token counts of a clip "
                       "(and the rendered prompt with --model)")
    p.add_argument("audio", metavar="AUDIO")
    p.add_argument("--convention", default="hf", choices=["hf", "vllm"])
    p.add_argument("--model", default=None, metavar="MODEL_DIR")
    p.add_argument("--question", default="What do you hear?")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("quickstart", help="the built-in end-to-end pipeline (the README's first command): "
                       "synthesise data, cold-start a demo model, one MGRD round, before/after table")
    p.add_argument("--out", default="runs/quickstart")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1500, help="cold-start SFT steps (default 1500)")
    p.add_argument("--rounds", type=int, default=1, help="MGRD rounds (default 1)")
    p.add_argument("--rl-steps", type=int, default=10, help="GRPO steps per round (default 10; 0 skips RL)")
    p.add_argument("--n-per-task", type=int, default=200, help="items per task family and split")
    p.add_argument("--eval-items", type=int, default=0, help="evaluate a seeded subset of N test items (default: all)")
    p.add_argument("--max-tokens", type=int, default=160, help="tokens per generated answer, reasoning included")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run: finished stages are skipped")
    p.set_defaults(func=cmd_quickstart)

    for module_name in COMMAND_GROUPS:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from audior1.errors import USER_ERRORS

    try:
        args.func(args)
    except USER_ERRORS as e:
        print(f"audior1 {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except SystemExit as e:  # a command that reported its own failure (train: bad data 2, divergence 3)
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
