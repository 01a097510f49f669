"""The package's layout is its data flow: imports run from a later stage to an earlier one, never back (type-only
annotations aside), as docs/architecture.md says."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rnnstudy"
#: The stages in flow order; the package root's modules are the shared vocabulary below them all, cli.py above.
STAGES = ["model", "run", "study", "analysis", "report"]


def stage(module: str) -> int:
    """Where a module sits in the flow: -1 for the shared vocabulary, len(STAGES) for the command line."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in STAGES:
        return STAGES.index(parts[1])
    return len(STAGES) if parts[1:2] == ["cli"] else -1


def imports(path: Path) -> list[tuple[str, bool]]:
    """Every rnnstudy module a file imports, and whether only for type checking."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}  # fmt: skip
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rnnstudy"):
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "rnnstudy" else [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("rnnstudy")]
        else:
            continue
        out += [(name, id(node) in typing_only) for name in names]
    return out


def test_every_import_runs_downstream_to_upstream():
    backwards = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for name, typing_only in imports(path):
            if stage(name) > stage(module) and not typing_only:
                backwards.append(f"{module} -> {name}")
    assert not backwards, backwards


def test_every_stage_is_a_subpackage_and_the_root_holds_only_the_vocabulary():
    assert all((PACKAGE / s / "__init__.py").exists() for s in STAGES)
    root = {p.stem for p in PACKAGE.glob("*.py")}
    assert root == {"__init__", "cli", "names", "errors", "lazy", "quiet"}


def test_only_the_store_writes_a_runs_record():
    """run.json is written by run/store.py alone (for its own run's folder); a stale trial's runs are derived dead
    when read, never rewritten by another process."""
    import re

    writers = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
                     if re.search(r"write\w*\([^)]*RUN_FILE", p.read_text()))  # fmt: skip
    assert writers == ["run/store.py"]
