"""`audior1 train …`: sft, rl and memory. Thin: parse arguments, load the config, call the module.

  audior1 train sft --config configs/sft-demo.yaml [key=value …] [--resume [CKPT]]
  audior1 train rl --algo grpo --config configs/rl-grpo-demo.yaml [key=value …] [--resume [CKPT]]
  audior1 train memory --preset step-audio-r1 --gpus 8
  torchrun --nproc_per_node 8 -m audior1.train.cli sft --config … (same commands, sharded with FSDP2)
"""

from __future__ import annotations

import argparse
import json
import sys

EPILOG = ("Overrides use the YAML key names, dotted for nested keys and list items: optim.lr=3e-4 "
          "data.0.weight=2 max_steps=500. Unknown keys fail with the list of valid ones. See docs/training.md.")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="FILE.yaml", help="training config (keys = dataclass fields)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CKPT",
                   help="continue from the latest checkpoint in out_dir (or from CKPT)")
    p.add_argument("--strict", action="store_true", help="fail on missing/corrupt audio instead of skipping it")


def _fix_resume(args) -> None:
    """`--resume key=value`: argparse gave the override to --resume; give it back."""
    from pathlib import Path

    if isinstance(args.resume, str) and "=" in args.resume and not Path(args.resume).exists():
        args.overrides.append(args.resume)
        args.resume = True


def cmd_sft(args) -> None:
    from audior1.train.config import SFTConfig, load_config
    from audior1.train.sft import train

    _fix_resume(args)
    cfg = load_config(SFTConfig, args.config, args.overrides, strict=True if args.strict else None)
    _print_result(_guarded(train, cfg, args.resume), cfg.out_dir)


def cmd_rl(args) -> None:
    from audior1.train.config import RLConfig, load_config
    from audior1.train.rl import train

    _fix_resume(args)
    cfg = load_config(RLConfig, args.config, args.overrides, strict=True if args.strict else None, algo=args.algo)
    _print_result(_guarded(train, cfg, args.resume), cfg.out_dir)


def cmd_dpo(args) -> None:
    from audior1.train.config import DPOConfig, load_config
    from audior1.train.dpo import train

    _fix_resume(args)
    cfg = load_config(DPOConfig, args.config, args.overrides, strict=True if args.strict else None)
    _print_result(_guarded(train, cfg, args.resume), cfg.out_dir)


def cmd_memory(args) -> None:
    from audior1.train.memory import estimate, format_table

    if args.kl and args.algo == "sft":
        print("audior1 train memory: --kl needs --algo grpo or ppo (SFT has no KL reference)", file=sys.stderr)
        raise SystemExit(2)
    rows = estimate(args.preset, args.gpus, seq_len=args.seq_len, micro_batch=args.micro_batch,
                    trainable=args.trainable.split(","), activation_checkpointing=not args.no_checkpointing,
                    algo=args.algo, kl=args.kl, lora_rank=args.lora_rank, lora_targets=args.lora_targets.split(","),
                    base_dtype=args.base_dtype)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))


def _guarded(train, cfg, resume) -> dict:
    """Divergence exits with status 3, unusable data or a rollout server that refuses or cannot be reached with
    status 2, each with a one-line message (the top-level CLI already does this for the shared error types)."""
    from audior1.data.manifest import ManifestError
    from audior1.train.data import DataError
    from audior1.train.rollout import RolloutServerError
    from audior1.train.run import Diverged

    try:
        return train(cfg, resume=resume)
    except Diverged as e:
        print(f"audior1 train: stopped: {e}", file=sys.stderr)
        raise SystemExit(3) from None
    except (DataError, ManifestError, RolloutServerError) as e:
        print(f"audior1 train: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _print_result(result: dict, out_dir: str) -> None:
    """Print the final metrics and keep them as OUT/result.json (what `audior1 mgrd` records per stage)."""
    import os
    from pathlib import Path

    if int(os.environ.get("RANK", "0")) == 0:
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items() if "/" not in k}
        print(json.dumps(shown))
        Path(out_dir, "result.json").write_text(json.dumps(shown, indent=1))


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="SFT and RL training (MGRD), single process or torchrun/FSDP2",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="train_command", metavar="{sft,rl,memory}", required=True)

    s = sub.add_parser("sft", help="supervised fine-tuning on a weighted mixture of manifests", epilog=EPILOG)
    _add_common(s)
    s.set_defaults(func=cmd_sft)

    r = sub.add_parser("rl", help="on-policy RL (PPO or GRPO) with verifiable rewards", epilog=EPILOG)
    r.add_argument("--algo", choices=["ppo", "grpo"], default=None, help="overrides the config's algo")
    _add_common(r)
    r.set_defaults(func=cmd_rl)

    o = sub.add_parser("dpo", help="sigmoid DPO on preference pairs against the cached starting model",
                       epilog=EPILOG)
    _add_common(o)
    o.set_defaults(func=cmd_dpo)

    m = sub.add_parser("memory", help="estimate per-GPU memory of FSDP2 training for a preset")
    m.add_argument("--preset", default="step-audio-r1")
    m.add_argument("--gpus", type=int, default=8)
    m.add_argument("--seq-len", type=int, default=8192, help="tokens per row")
    m.add_argument("--micro-batch", type=int, default=1, help="rows per forward pass per GPU")
    m.add_argument("--trainable", default="adapter,decoder", help="comma-separated: encoder,adapter,decoder")
    m.add_argument("--algo", choices=["sft", "grpo", "ppo"], default="sft",
                   help="ppo adds a value model of the policy's size")
    m.add_argument("--kl", action="store_true", help="RL with kl_coef > 0: count the frozen reference policy")
    m.add_argument("--no-checkpointing", action="store_true", help="without activation checkpointing")
    m.add_argument("--lora-rank", type=int, default=None, metavar="R", help="LoRA of rank R instead of full training "
                   "(the base frozen; --trainable is then not used)")
    m.add_argument("--lora-targets", default="attention,mlp", help="LoRA targets: attention, mlp, adapter or layer names")
    m.add_argument("--base-dtype", choices=["bfloat16", "float32"], default="bfloat16",
                   help="the frozen base's dtype with LoRA (default bfloat16)")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_memory)


def main(argv: list[str] | None = None) -> int:
    """`python -m audior1.train.cli sft …` (what torchrun launches): `audior1 train sft …`, with the same
    error handling and exit codes."""
    from audior1.cli import main as audior1_main

    argv = list(sys.argv[1:] if argv is None else argv)
    return audior1_main(argv if argv[:1] == ["train"] else ["train", *argv])


if __name__ == "__main__":
    sys.exit(main())
