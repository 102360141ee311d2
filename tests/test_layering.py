"""The module map of docs/design.md §6.2, enforced: every module imports only from its own floor or below (imports
inside functions count too), so data flows one way and no loop between floors can come back."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "audior1"

# docs/design.md §6.2, bottom to top. A package's modules share its floor unless named on their own.
FLOORS = {
    "config": 0, "audio": 0, "sampling": 0, "sources": 0,
    "lora": 1, "quantize": 1,
    "chat": 1, "model": 1,
    "processor": 2, "checkpoint": 2,
    "engine": 3,
    "server": 4, "data": 4,
    "errors": 5,
    "eval": 6, "data.grounding": 6,    # the MGRD filter judges correctness by the evaluation's own rule
    "train": 7,
    "cli": 8, "serve_cli": 8, "quickstart": 8, "mgrd": 8, "data.cli": 8, "eval.cli": 8, "train.cli": 8, "__main__": 8,
}


# `from audior1 import NAME` for the names audior1/__init__.py offers: the floor each counts as.
FRONT_DOOR = {"__version__": "config", "load_model": "checkpoint", "Processor": "processor"}


def floor(module: str) -> int:
    """The floor of `audior1.<module>` (dotted, without the package prefix)."""
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in FLOORS:
            return FLOORS[".".join(parts[:k])]
    raise AssertionError(f"audior1.{module} is on no floor of docs/design.md §6.2: add it to the map and the doc")


def imports_of(path: Path) -> set[str]:
    """The audior1 modules a file imports, anywhere in it (`from audior1 import x` counts as audior1.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("audior1.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "audior1":  # a submodule, or a name the package's front door re-exports
                found |= {f"audior1.{FRONT_DOOR.get(a.name, a.name)}" for a in node.names}
            elif node.module.startswith("audior1."):
                found.add(node.module)
    return {m.removeprefix("audior1.") for m in found}


def test_nothing_imports_upward():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        if module == "__init__":
            continue  # the package's front door re-exports the public API lazily
        for imported in imports_of(path):
            if floor(imported) > floor(module):
                upward.append(f"{module} (floor {floor(module)}) imports {imported} (floor {floor(imported)})")
    assert not upward, "imports against the data flow of docs/design.md §6.2:\n" + "\n".join(upward)


def test_the_map_catches_an_upward_import(tmp_path):
    """The check itself can fail: a chat module importing the engine is flagged."""
    bad = tmp_path / "chat.py"
    bad.write_text("def f():\n    from audior1.engine import Engine\n")
    assert imports_of(bad) == {"engine"} and floor("engine") > floor("chat")
