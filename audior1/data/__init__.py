"""Data for audior1: a procedural acoustic-reasoning suite, real spoken digits (FSDD), manifests, grounding.

Modules: `dsp` (signal building blocks), `core` (items, seeding, balance), `sound` / `compose` / `speech`
(task families), `synth` (registry and builder), `fsdd` (real spoken digits), `measure` (independent acoustic
measurements), `refusal` ("I cannot hear audio" and other wrong self-cognition), `grounding` (is a chain of
reasoning grounded in the sound?), `manifest` (JSONL I/O, MCQ prompt),
`stats` (summaries and spectrograms), `cli` (the `audior1 data ...` commands). See docs/data.md.
"""

from audior1.data.core import DataError
from audior1.data.manifest import ManifestError, read_manifest, write_manifest

__all__ = ["DataError", "ManifestError", "read_manifest", "write_manifest"]
