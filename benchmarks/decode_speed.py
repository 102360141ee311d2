"""Decode speed of the engine against transformers, and n-sample forking against independent prefills.

Prints one JSON object. Baselines run in the same process, interleaved with the engine (rep by rep), and
each figure is the best of `--repeats` runs, so background load hurts both sides alike.

- decode: greedy tokens/s at batch 1 and 8 (prompts of different lengths, left-padded) for
  `Engine.generate` and for transformers' `Qwen2ForCausalLM.generate` loaded with the same decoder weights
  (the names match; no key map). Every run produces exactly `--tokens` tokens per row (no stop tokens);
  `identical_tokens` says whether both produced the same greedy tokens.
- fork: one prompt with 10 s of audio, n = 8 sampled continuations. The engine prefills it once and forks
  the cache; the baselines prefill it 8 times: as 8 requests in one batch, and as 8 requests one after
  another.

    python benchmarks/decode_speed.py [--model DIR] [--tokens 128] [--repeats 5]
    python benchmarks/decode_speed.py --preset step-audio-2-mini --layers 4 --device cuda --dtype bfloat16

`--preset NAME --layers N` builds a model of that preset's widths with N decoder layers (random weights, the
official-layout tokenizer) directly on `--device`, without writing a checkpoint: the released widths at a
depth one GPU measures in seconds (scripts/gpu-check.sh). On CUDA the result also gives the peak memory.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import tempfile
import time

import numpy as np
import soundfile as sf
import torch

from audior1.engine import Engine, SamplingParams


def tone_wav(seconds: float, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    wav = 0.3 * np.sin(2 * np.pi * (300 + 40 * t) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
    out = io.BytesIO()
    sf.write(out, wav.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def reference_qwen2(model):
    import transformers

    t = model.config.text
    cfg = transformers.Qwen2Config(
        vocab_size=t.vocab_size, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_hidden_layers, num_attention_heads=t.num_attention_heads,
        num_key_value_heads=t.num_key_value_heads, rms_norm_eps=t.rms_norm_eps, rope_theta=t.rope_theta,
        max_position_embeddings=t.max_position_embeddings, tie_word_embeddings=False)
    ref = transformers.Qwen2ForCausalLM(cfg).to(device=model.device, dtype=model.dtype).eval()
    ref.load_state_dict({k: v for k, v in model.state_dict().items() if k.startswith(("model.", "lm_head."))},
                        strict=True)
    return ref, transformers.__version__


def best_of(repeats: int, runs: dict) -> dict:
    """Run each callable `repeats` times, interleaved; return the best wall time of each."""
    best = {name: float("inf") for name in runs}
    results = {}
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            results[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best, results


def bench_decode(engine: Engine, ref, tokens: int, repeats: int) -> dict:
    out = {}
    params = SamplingParams(max_tokens=tokens, temperature=0, stop_token_ids=[])
    words = "what is the pitch of the second beep and how many beeps are there in the clip".split()
    for batch in (1, 8):
        prompts = [[{"role": "user", "content": " ".join(words[: 4 + 2 * i])}] for i in range(batch)]
        encoded = [engine.processor.encode(p) for p in prompts]
        padded = engine.processor.collate(encoded, padding_side="left")
        ids, mask = padded.input_ids.to(engine.model.device), padded.attention_mask.long().to(engine.model.device)

        def ours():
            return [c[0].token_ids for c in engine.generate(encoded, params)]

        def theirs():
            with torch.no_grad():
                g = ref.generate(ids, attention_mask=mask, max_new_tokens=tokens, min_new_tokens=tokens,
                                 do_sample=False, pad_token_id=engine.tokenizer.endoftext_id)
            return g[:, ids.shape[1]:].tolist()

        ours(), theirs()  # warm-up
        best, results = best_of(repeats, {"audior1": ours, "transformers": theirs})
        rate = {k: batch * tokens / v for k, v in best.items()}
        out[f"batch_{batch}"] = {
            "audior1_tokens_per_s": round(rate["audior1"], 1),
            **_synchronised(engine.model.device),
            "transformers_tokens_per_s": round(rate["transformers"], 1),
            "speedup": round(rate["audior1"] / rate["transformers"], 2),
            "identical_tokens": results["audior1"] == results["transformers"],
            "prompt_tokens": [len(e.input_ids) for e in encoded],
        }
    return out


def _synchronised(device) -> dict:
    """Nothing to report; on CUDA, wait for queued kernels so the next timing starts clean."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {}


def built_engine(preset_name: str, layers: int, device: str, dtype: str) -> Engine:
    """A preset's widths at `layers` decoder layers, random weights (seeded), built on `device`."""
    from audior1 import chat
    from audior1.checkpoint import apply_tokenizer_ids, resolve_dtype
    from audior1.config import OFFICIAL_VOCAB_SIZE, preset
    from audior1.model import StepAudioR1ForCausalLM
    from audior1.processor import Processor

    cfg = preset(preset_name)
    cfg.text.num_hidden_layers = layers
    tokenizer = (chat.official_layout_tokenizer() if cfg.text.vocab_size == OFFICIAL_VOCAB_SIZE
                 else chat.train_small_tokenizer(cfg.text.vocab_size))
    apply_tokenizer_ids(cfg, tokenizer)
    with torch.device(device):
        model = StepAudioR1ForCausalLM(cfg).to(resolve_dtype(dtype))
    with torch.no_grad():
        for p in model.parameters():  # N(0, 0.02) on the device: fast, and keeps activations in range
            p.normal_(0.0, 0.02) if p.dim() > 1 else p.fill_(1.0 if p.dim() == 1 and p.shape[0] == cfg.text.hidden_size else 0.0)
    model.model.rotary.inv_freq = type(model.model.rotary)(cfg.text.head_dim, cfg.text.rope_theta).inv_freq.to(device)
    return Engine(model.eval(), Processor(tokenizer))


def bench_fork(engine: Engine, tokens: int, repeats: int, n: int = 8) -> dict:
    audio = tone_wav(10.0)
    messages = [{"role": "user", "content": [{"type": "text", "text": "Describe the sound."},
                                             {"type": "audio", "audio": audio}]}]
    encoded = engine.processor.encode(messages)
    fork = SamplingParams(max_tokens=tokens, temperature=0.7, seed=0, n=n, stop_token_ids=[])
    single = SamplingParams(max_tokens=tokens, temperature=0.7, seed=0, n=1, stop_token_ids=[])
    runs = {
        "fork_n8": lambda: engine.generate([encoded], fork),
        "batched_8_prefills": lambda: engine.generate([encoded] * n, single),
        "sequential_8_requests": lambda: [engine.generate([encoded], single) for _ in range(n)],
    }
    for fn in runs.values():
        fn()  # warm-up
    best, _ = best_of(repeats, runs)
    rate = {k: n * tokens / v for k, v in best.items()}
    return {
        "prompt_tokens": len(encoded.input_ids), "audio_seconds": 10.0, "n": n, "tokens_per_sample": tokens,
        **{f"{k}_tokens_per_s": round(v, 1) for k, v in rate.items()},
        "speedup_vs_batched_prefills": round(rate["fork_n8"] / rate["batched_8_prefills"], 2),
        "speedup_vs_sequential": round(rate["fork_n8"] / rate["sequential_8_requests"], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="checkpoint directory (default: a fresh `demo` preset)")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--fork-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--preset", help="build this preset's widths in memory instead of loading --model")
    ap.add_argument("--layers", type=int, help="with --preset: decoder layers (e.g. 4)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="float32 | bfloat16 (default: the checkpoint's; --preset: float32)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads for both sides (default 1: on a small shared machine OpenMP "
                    "waits for descheduled threads swamp these tiny matmuls; 0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            from audior1.checkpoint import init_checkpoint

            model_dir = tmp
            init_checkpoint("demo", model_dir, seed=0)
        if args.preset:
            engine = built_engine(args.preset, args.layers or preset_layers(args.preset), args.device,
                                  args.dtype or "float32")
        else:
            engine = Engine.from_pretrained(model_dir, device=args.device, dtype=args.dtype)
        ref, tf_version = reference_qwen2(engine.model)
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        result = {
            "benchmark": "decode_speed",
            "model": (f"{args.preset} widths, {args.layers} decoder layers (random weights)" if args.preset
                      else args.model or "demo preset (random weights)"),
            "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu",
            "dtype": str(engine.model.dtype),
            "parameters": sum(p.numel() for p in engine.model.parameters()),
            "torch": torch.__version__, "transformers": tf_version, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "repeats": args.repeats,
            "decode": bench_decode(engine, ref, args.tokens, args.repeats),
            "fork": bench_fork(engine, args.fork_tokens, args.repeats),
        }
        if args.device.startswith("cuda"):
            result["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    json.dump(result, sys.stdout, indent=2)
    print()


def preset_layers(name: str) -> int:
    from audior1.config import preset

    return preset(name).text.num_hidden_layers


if __name__ == "__main__":
    main()
