"""audior1: an open implementation of Step-Audio-R1 and Modality-Grounded Reasoning Distillation.

The public API is deliberately small; heavy modules are imported lazily so that `import audior1`
stays cheap for command-line tools that only need part of the package.
"""

__version__ = "0.1.0"

__all__ = ["load_model", "Processor", "__version__"]


def load_model(path, dtype=None, device=None, strict=True, *, adapter=None, quantize=None):
    """Load an audior1/Step-Audio-R1 checkpoint: a directory, a LoRA adapter directory (over the base it
    names) or a Hub id; `adapter` merges a LoRA adapter, `quantize` ("int8" | "int4") quantizes the decoder's
    linear weights (see `audior1.checkpoint.load_model`)."""
    from audior1.checkpoint import load_model as _load_model

    return _load_model(path, dtype=dtype, device=device, strict=strict, adapter=adapter, quantize=quantize)


def __getattr__(name):
    if name == "Processor":
        from audior1.processor import Processor

        return Processor
    raise AttributeError(f"module 'audior1' has no attribute {name!r}")
