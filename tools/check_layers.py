"""Check that imports flow one way down tandem's layers and that no module outgrows 400 lines.

    python tools/check_layers.py        # prints every violation; exit status 1 if any

Layers, bottom to top (a module may import its own layer and those below, never one above):
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (layer, module prefixes); the longest matching prefix decides a module's layer
LAYERS = [
    ("version", ["tandem"]),
    ("core", ["tandem.pipelines.core"]),
    ("io", ["tandem.pipelines.io"]),
    ("models", ["tandem.pipelines.models", "tandem.synth.tts"]),
    ("curate", ["tandem.pipelines.curate"]),
    ("synth", ["tandem.synth"]),
    ("filters", ["tandem.filters"]),
    ("store", ["tandem.pipelines.store"]),
    ("catalog", ["tandem.catalogs"]),
    ("train", ["tandem.pipelines.train"]),
    ("jobs", ["tandem.ray_jobs"]),
    ("testing", ["tandem.testing"]),
]
# folder in the repository -> package it installs as (pyproject's package-dir)
FOLDERS = {"tandem": "tandem", "pipelines": "tandem.pipelines", "synth": "tandem.synth",
           "filters": "tandem.filters", "catalogs": "tandem.catalogs", "ray_jobs": "tandem.ray_jobs"}
OLD_TOP = {"pipelines", "synth", "filters", "catalogs", "ray_jobs"}
MAX_LINES = 400
__doc__ += "\n".join(f"  {i}. {name}: {', '.join(p)}" for i, (name, p) in enumerate(LAYERS))


def layer_of(module: str) -> tuple[int, str] | None:
    best = None
    for rank, (name, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > len(best[2])):
                best = (rank, name, p)
    return (best[0], best[1]) if best else None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    parts[0] = FOLDERS[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, module: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):  # function-level imports count too
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            # `from pkg import submodule` imports the submodule
            out += [(node.lineno, f"{target}.{a.name}") for a in node.names]
    return out


def check() -> list[str]:
    problems = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT)
            n = len(path.read_text().splitlines())
            if n > MAX_LINES:
                problems.append(f"{rel}: {n} lines (max {MAX_LINES})")
            mod = module_name(path)
            mine = layer_of(mod)
            for line, target in imports(path, mod):
                top = target.split(".")[0]
                if top in OLD_TOP:
                    problems.append(f"{rel}:{line}: imports {target!r}; use the tandem.{top} namespace")
                    continue
                if top != "tandem":
                    continue
                theirs = layer_of(target)
                if theirs and theirs[0] > mine[0]:
                    problems.append(f"{rel}:{line}: {mod} ({mine[1]}) imports {target} ({theirs[1]}), "
                                    "a layer above it")
    return problems


def main() -> int:
    problems = check()
    for p in problems:
        print(p)
    print(f"{len(problems)} layering problem(s)" if problems else "layers: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
