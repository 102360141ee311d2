"""Where a model's files are: a checkpoint directory, a LoRA adapter directory over a base, or a Hub id.

Every command that takes `--model` (and `--adapter`) resolves it here, once, into a `ModelSource`: the
directory holding `config.json`, the tokenizer and the base weights, plus the adapters to merge into those
weights, in the order they apply. Loading (`checkpoint.open_checkpoint`) and the tokenizer
(`Processor.from_pretrained`) both go through `resolve`, so `--model` means the same to every command.

Design choices
- A local path wins: if `--model X` exists on disk it is a directory, never a Hub id. Otherwise a name of
  the form `org/name` or `org/name@revision` is a Hub id, fetched (or found in the cache) with
  `huggingface_hub.snapshot_download`, restricted to what audior1 reads (config, tokenizer, generation
  config, safetensors and their index; adapter files for an adapter repository), so a repository's pickled
  weights, ONNX exports or images are never downloaded. `HF_HUB_OFFLINE=1`, `HF_HOME` and `HF_HUB_CACHE`
  work as everywhere else in the Hugging Face ecosystem (huggingface_hub reads them); offline and not
  cached is a `SourceError` that says which id, which revision and where it looked.
- An adapter directory (peft's `adapter_config.json` + `adapter_model.safetensors`, no `config.json`)
  names its base in `base_model_name_or_path`, which is itself resolved the same way; so an adapter trained
  on top of another adapter checkpoint (MGRD rounds with LoRA) loads as base + both adapters, applied in
  order. The tokenizer and the generation defaults always come from the base: an adapter does not change
  the vocabulary.
- Nothing here reads weights; `audior1.lora` reads and merges adapters, `audior1.checkpoint` the weights.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# What a snapshot download fetches: the files audior1 reads, nothing else (no *.bin, *.pt, images, ONNX).
HUB_PATTERNS = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "*.safetensors", "*.safetensors.index.json", ADAPTER_CONFIG]
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
MAX_ADAPTER_DEPTH = 8  # adapters over adapters: a chain longer than this is almost surely a loop


class SourceError(ValueError):
    """--model / --adapter names nothing loadable (the message says what was tried)."""


@dataclass
class ModelSource:
    weights: Path  # the base checkpoint directory: config.json, tokenizer, safetensors
    adapters: list[Path] = field(default_factory=list)  # LoRA adapter directories, in the order they apply

    def describe(self) -> str:
        return str(self.weights) + "".join(f" + adapter {a}" for a in self.adapters)


def is_adapter_dir(path: Path) -> bool:
    return (path / ADAPTER_CONFIG).is_file() and not (path / "config.json").is_file()


def resolve(model: str | Path, adapter: str | Path | None = None) -> ModelSource:
    """`--model` (a checkpoint or adapter directory, or a Hub id [@revision]) and an optional `--adapter`
    → the base directory and the adapters to apply to it."""
    source = _resolve(str(model), depth=0)
    if adapter is not None:
        adapter_dir = locate(str(adapter), what="--adapter")
        if not (adapter_dir / ADAPTER_CONFIG).is_file():
            raise SourceError(f"--adapter {adapter}: no {ADAPTER_CONFIG} in {adapter_dir} (expected a peft LoRA "
                              f"adapter: {ADAPTER_CONFIG} + {ADAPTER_WEIGHTS})")
        source.adapters.append(adapter_dir)
    return source


def _resolve(ref: str, depth: int) -> ModelSource:
    path = locate(ref)
    if not is_adapter_dir(path):
        return ModelSource(path)
    if depth >= MAX_ADAPTER_DEPTH:
        raise SourceError(f"{path}: more than {MAX_ADAPTER_DEPTH} adapters stacked on one another (a loop in "
                          "base_model_name_or_path?)")
    base = adapter_base(path)
    if not base:
        raise SourceError(f"{path / ADAPTER_CONFIG}: no base_model_name_or_path; give the base with --model BASE "
                          f"--adapter {path}")
    source = _resolve(base, depth + 1)
    source.adapters.append(path)
    return source


def adapter_base(adapter_dir: Path) -> str | None:
    """The base an adapter directory names (`base_model_name_or_path`)."""
    file = Path(adapter_dir) / ADAPTER_CONFIG
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SourceError(f"{file}: not readable JSON ({e})") from None
    if not isinstance(config, dict):
        raise SourceError(f"{file}: expected a JSON object")
    return config.get("base_model_name_or_path") or None


def locate(ref: str, what: str = "--model") -> Path:
    """A local directory as it is; a Hub id through the Hub cache (downloading unless offline)."""
    path = Path(ref).expanduser()
    if path.exists():
        if not path.is_dir():
            raise SourceError(f"{what} {ref}: not a directory")
        return path
    if not HUB_ID.match(ref) or ref.startswith((".", "/", "~")):
        raise SourceError(f"{what} {ref}: no such directory, and not a Hub id (org/name or org/name@revision)")
    repo, _, revision = ref.partition("@")
    return hub_snapshot(repo, revision or None)


def hub_snapshot(repo: str, revision: str | None = None) -> Path:
    """The local snapshot directory of a Hub repository: from the cache when it has this revision (always,
    with HF_HUB_OFFLINE=1), else downloaded — only the files in `HUB_PATTERNS`."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - a dependency of tokenizers, so always present in practice
        raise SourceError(f"{repo}: resolving Hub ids needs huggingface_hub (pip install huggingface_hub)") from None
    shown = f"{repo}@{revision}" if revision else repo
    if (repo, revision) in _SNAPSHOTS:  # one command resolves the same id several times (weights, tokenizer…)
        return _SNAPSHOTS[repo, revision]
    try:
        path = Path(snapshot_download(repo, revision=revision, allow_patterns=HUB_PATTERNS))
    except LocalEntryNotFoundError:
        raise SourceError(_not_cached(shown)) from None
    except HfHubHTTPError as e:
        raise SourceError(f"{shown}: the Hub refused it ({str(e).splitlines()[0]})") from None
    except (OSError, ValueError) as e:  # no network, bad revision name, …
        if _offline():
            raise SourceError(_not_cached(shown)) from None
        raise SourceError(f"{shown}: could not be fetched ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    _SNAPSHOTS[repo, revision] = path
    return path


_SNAPSHOTS: dict[tuple[str, str | None], Path] = {}


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _not_cached(shown: str) -> str:
    from huggingface_hub import constants

    how = "HF_HUB_OFFLINE is set" if _offline() else "the Hub could not be reached"
    return (f"{shown}: not in the local Hub cache ({constants.HF_HUB_CACHE}) and {how}. Download it once with "
            f"network access (audior1 resolves it on first use, or `hf download {shown.split('@')[0]}`), point "
            f"HF_HOME / HF_HUB_CACHE at a cache that has it, or pass a local directory.")
