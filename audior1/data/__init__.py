"""Data for audior1: a procedural acoustic-reasoning suite, real spoken digits (FSDD), manifests, grounding.

Modules: `dsp` (signal building blocks), `core` (items, seeding, balance), `sound` / `compose` / `speech`
(task families), `synth` (registry and builder), `fsdd` (real spoken digits), `facts` (what a clip holds and the
one checker for a claim about one part of it), `measure` (those facts measured on the audio), `claims` (what a
chain of reasoning claims, about which referent), `refusal` ("I cannot hear audio" and other wrong
self-cognition), `grounding` (the MGRD keep/drop filter), `selfcog` (the self-cognition audit), `adversarial` (corrupted and paraphrased chains that
test it), `manifest` (JSONL I/O, MCQ prompt), `stats` (summaries and spectrograms), `cli` (the `audior1 data
...` commands). See docs/data.md.
"""

from audior1.data.core import DataError
from audior1.data.manifest import ManifestError, read_manifest, write_manifest

__all__ = ["DataError", "ManifestError", "read_manifest", "write_manifest"]
