"""The package's import layers: a module imports only from layers below it (and from its own package).

    core, typed  <  config, console  <  files, stages, runtime, presets  <  models, data  <  offline  <  online
          <  eval, tune, report, export, cli_args  <  cli          (jobs/ and bench/ sit on top)

`core` is numpy-only (tests/test_core.py checks that); `online` must not import `report`: a run writes
its numbers, the report reads them.
"""

import ast
from pathlib import Path

LAYERS = {
    "core": 0,
    "typed": 0,
    "config": 1,
    "console": 1,
    "files": 2,
    "stages": 2,
    "runtime": 2,
    "presets": 2,
    "models": 3,
    "data": 3,
    "offline": 4,
    "online": 5,
    "eval": 6,
    "tune": 6,
    "report": 6,
    "export": 6,
    "cli_args": 6,  # the command line's parser, which only the command line reads
    "cli": 7,
}
PACKAGE = Path(__file__).resolve().parents[1] / "lead_ray"


def unit(module: str) -> str:
    """lead_ray.online.run → online; lead_ray.cli → cli."""
    return module.split(".")[1]


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
    return {m for m in names if m.startswith("lead_ray.")}


def test_every_module_imports_only_from_layers_below_it():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        if rel.name == "__init__" and len(rel.parts) == 2:
            continue
        me = rel.parts[1]
        assert me in LAYERS, f"{rel}: a new top-level module; give it a layer in LAYERS"
        for target in imports(path):
            other = unit(target)
            if other != me and LAYERS[other] >= LAYERS[me]:
                wrong.append(f"{rel} imports {target} (layer {LAYERS[other]} ≥ {LAYERS[me]})")
    assert not wrong, "\n".join(wrong)


def test_the_check_finds_an_upward_import(tmp_path):
    fake = tmp_path / "m.py"
    fake.write_text("from lead_ray.report import report\nimport lead_ray.core.bandit\n")
    assert imports(fake) == {"lead_ray.report", "lead_ray.core.bandit"}
    assert LAYERS[unit("lead_ray.report")] > LAYERS["online"]  # what online/run.py used to do


BENCH = PACKAGE.parent / "bench"
BENCH_PACKAGES = {"quality", "scale", "micro", "gpu"}


def bench_imports(path: Path) -> set[str]:
    """The bench modules a file imports, at its top or inside a function (a lazy import is still a cycle)."""
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
    return {m for m in names if m.startswith("bench.")}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle's modules (a depth-first search; each cycle found once per entry point)."""
    found, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(trail[trail.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_bench_is_packages_by_purpose_without_import_cycles_and_lead_ray_never_imports_it():
    modules = {".".join(p.relative_to(BENCH.parent).with_suffix("").parts): p for p in BENCH.rglob("*.py")}
    modules = {m: p for m, p in modules.items() if "work" not in p.relative_to(BENCH).parts}
    top = {p.name for p in BENCH.glob("*.py")} - {"__init__.py"}
    assert not top, f"bench/ holds packages by purpose, not loose scripts: {sorted(top)}"
    assert {p.name for p in BENCH.iterdir() if (p / "__init__.py").exists()} == BENCH_PACKAGES
    graph = {m: {i for i in bench_imports(p) if i in modules} for m, p in modules.items()}
    assert not cycles(graph), cycles(graph)
    assert not [p for p in PACKAGE.rglob("*.py") if bench_imports(p)], "lead_ray imports bench"


def test_the_cycle_check_finds_a_lazy_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_every_bench_script_the_code_and_docs_name_exists():
    """After bench/ became packages: a path to a benchmark script in the docs, the Makefile or the code (also one
    joined from parts with `/`) names a file that is there."""
    import re

    root = PACKAGE.parent
    texts = [root / "README.md", root / "Makefile", *root.glob("docs/*.md"), *root.glob("tests/*.py")]
    texts += [p for p in BENCH.rglob("*.py") if "work" not in p.relative_to(BENCH).parts]
    missing = set()
    for path in texts:
        text = path.read_text()
        named = re.findall(r"\bbench/[\w/]+\.(?:py|sh)\b", text)
        named += ["bench/" + joined for joined in re.findall(r'"bench" / ((?:"\w+" / )*"\w+\.py")', text)]
        missing |= {f"{path.name}: {n}" for n in named if not (root / n.replace('"', "").replace(" / ", "/")).exists()}
    assert not missing, sorted(missing)
