"""Check tandem's import graph against the intended one, find import cycles, cap module size.

    python tools/check_layers.py              # this checkout; exit status 1 on any problem
    python tools/check_layers.py --root DIR   # another tree laid out the same way (the tests use one)

Every import counts (function-level ones too), in the packages and in bench/, tools/ and tests/.
A module may import its own layer and the layers ALLOWED lists for it, nothing else; siblings
(curate, synth, filters) do not import each other; the store, the catalog and the trainer API sit
above them, the jobs on top; nothing in the packages imports bench/, tools/ or tests/. The graph:
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

# layer -> module prefixes; the longest matching prefix decides a module's layer
LAYERS = {
    "version": ["tandem"],
    "core": ["pipelines", "pipelines.core"],
    "io": ["pipelines.io"],
    "models": ["pipelines.models", "synth.tts"],
    "curate": ["pipelines.curate"],
    "synth": ["synth"],
    "filters": ["filters"],
    "store": ["pipelines.store"],
    "catalog": ["catalogs"],
    "train": ["pipelines.train"],
    "jobs": ["ray_jobs"],
    "testing": ["tandem.testing"],
    "bench": ["bench"],
    "tools": ["tools"],
    "tests": ["tests"],
}
_BASE = {"version", "core", "io"}
_PRODUCTION = {"version", "core", "io", "models", "curate", "synth", "filters", "store", "catalog", "train", "jobs"}
# layer -> the other layers it may import
ALLOWED = {
    "version": set(),
    "core": {"version"},
    "io": {"version", "core"},
    "models": _BASE,
    "curate": _BASE | {"models"},
    "synth": _BASE | {"models"},
    "filters": _BASE | {"models"},
    # the store sits above the siblings: commits settle dedup with filters.dedup's index
    "store": _BASE | {"filters"},
    "catalog": _BASE | {"store", "filters"},
    "train": _BASE | {"store", "catalog"},
    "jobs": _PRODUCTION - {"jobs"},
    "testing": _PRODUCTION,
    "bench": _PRODUCTION | {"testing", "tools"},
    "tools": _PRODUCTION | {"testing"},
    "tests": _PRODUCTION | {"testing", "tools", "bench"},
}
FOLDERS = ["tandem", "pipelines", "synth", "filters", "catalogs", "ray_jobs", "bench", "tools", "tests"]
SIZE_CAPPED = {"tandem", "pipelines", "synth", "filters", "catalogs", "ray_jobs"}
MAX_LINES = 400
__doc__ += "\n".join(f"  {name}: {', '.join(LAYERS[name])} -> may import {', '.join(sorted(ALLOWED[name])) or '-'}"
                     for name in LAYERS)


def layer_of(module: str) -> str | None:
    best = None
    for name, prefixes in LAYERS.items():
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > len(best[1])):
                best = (name, p)
    return best[0] if best else None


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, module: str) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names imported from it) for every import statement."""
    tree = ast.parse(path.read_text(), str(path))
    pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target, [a.name for a in node.names]))
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]; counter[0] += 1
        stack.append(start); on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1
                    stack.append(w); on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop(); on.discard(w); comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def check(root: Path | None = None) -> list[str]:
    root = Path(root) if root else Path(__file__).resolve().parent.parent
    files = {}
    for folder in FOLDERS:
        if (root / folder).is_dir():
            for path in sorted((root / folder).rglob("*.py")):
                if "__pycache__" not in path.parts:
                    files[module_name(root, path)] = path
    problems, graph = [], {m: set() for m in files}
    for mod, path in files.items():
        rel = path.relative_to(root)
        if rel.parts[0] in SIZE_CAPPED and (n := len(path.read_text().splitlines())) > MAX_LINES:
            problems.append(f"{rel}: {n} lines (max {MAX_LINES})")
        mine = layer_of(mod)
        for line, target, names in imports(path, mod):
            # `from pkg import submodule` imports the submodule
            targets = [f"{target}.{n}" for n in names if f"{target}.{n}" in files] or [target]
            for t in targets:
                if t.split(".")[0] not in FOLDERS:
                    continue
                if t.startswith("tandem.") and t.split(".")[1] in SIZE_CAPPED - {"tandem"}:
                    problems.append(f"{rel}:{line}: imports {t!r}; the folders are packages of their own")
                    continue
                theirs = layer_of(t)
                if theirs and theirs != mine and theirs not in ALLOWED[mine]:
                    problems.append(f"{rel}:{line}: {mod} ({mine}) imports {t} ({theirs}), "
                                    f"which {mine} may not import")
                if t in files and t != mod:
                    graph[mod].add(t)
    for comp in _cycles(graph):
        problems.append("import cycle: " + " -> ".join(comp + [comp[0]]))
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=None)
    problems = check(ap.parse_args(argv).root)
    for p in problems:
        print(p)
    print(f"{len(problems)} import-graph problem(s)" if problems else "import graph: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
