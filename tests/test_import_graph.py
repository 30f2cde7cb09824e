"""The layers import one way (docs/architecture.md "Layers"): no cycle between modules or
between subpackages, ``mta_kernels`` never imports ``mta``, neither package imports
``benchmarks`` or edits ``sys.path``."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"mta_kernels": ROOT / "mta_kernels", "mta": ROOT / "python" / "mta"}


def _modules() -> dict[str, Path]:
    out = {}
    for name, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((name, *parts))] = path
    return out


MODULES = _modules()


def _imports(path: Path, module: str) -> set[str]:
    """Every module of ours that ``path`` imports, anywhere in the file (lazy imports too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {m: _imports(p, m) for m, p in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _is_within(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent + ".")


def test_no_module_cycle():
    # A package importing its own submodules (its __init__ re-exporting them) is not a cycle
    # of ideas; a submodule importing its package's __init__ back would be, and is kept.
    graph = {m: {d for d in deps if not _is_within(d, m)} for m, deps in GRAPH.items()}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def _subpackage(module: str) -> str | None:
    """``mta_kernels.sampling`` for any module inside that folder; None for top-level modules."""
    top = module.split(".")[0]
    parts = MODULES[module].relative_to(PACKAGES[top]).parts
    return f"{top}.{parts[0]}" if len(parts) > 1 else None


def test_no_subpackage_cycle():
    graph: dict[str, set[str]] = {}
    for m, deps in GRAPH.items():
        for d in deps:
            a, b = _subpackage(m), _subpackage(d)
            if a and b and a != b:
                graph.setdefault(a, set()).add(b)
    assert _cycle(graph) is None, f"subpackage cycle: {' -> '.join(_cycle(graph))}"


def test_layers_import_one_way():
    assert not [m for m, deps in GRAPH.items() if m.startswith("mta_kernels") and any(d.startswith("mta.") or d == "mta"
                                                                                    for d in deps)]
    for module, path in MODULES.items():
        text = path.read_text()
        assert "import benchmarks" not in text and "from benchmarks" not in text, module
        assert "sys.path" not in text, module
