"""The package's layout, as rules a change cannot break quietly.

Imports point down: tools (demo, bench, multihost) -> definitions, component -> defs (Dagster
wiring) -> the plain-Python layers (gsc, warehouse, sync, config, reports, ...). The emulator
imports nothing of the pipeline and only the tooling imports it. Module-level imports form no
cycle; the layering rules read imports at every level (one inside a function still points where
it points). A production install needs none of the tooling's extras.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "gsc_pipeline"

# No Dagster, no tooling: plain Python that the Dagster layer, the bench and tests all call.
PLAIN_LAYERS = (
    "gsc_pipeline.gsc",
    "gsc_pipeline.warehouse",
    "gsc_pipeline.sync",
    "gsc_pipeline.config",
    "gsc_pipeline.reports",
    "gsc_pipeline.proof",
    "gsc_pipeline.audit",
    "gsc_pipeline.lifetime",
    "gsc_pipeline.sitemaps",
    "gsc_pipeline.constants",
    "gsc_pipeline.search_calendar",
    "gsc_pipeline.pandas_on_demand",
)
# Above the plain layers: nothing below may import these.
UPPER = (
    "gsc_pipeline.defs",
    "gsc_pipeline.component",
    "gsc_pipeline.definitions",
    "gsc_pipeline.instance",
    "gsc_pipeline.doctor",
    "gsc_pipeline.cli",
    "gsc_pipeline.tools",
    "gsc_pipeline.emulator",
)
TOOLING_DEPENDENCIES = ("matplotlib", "psutil", "aiohttp", "jwt")


def _within(module: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(module == p or module.startswith(p + ".") for p in prefixes)


@dataclass(frozen=True)
class Import:
    source: str
    target: str  # the imported name: a gsc_pipeline module, or a third-party dotted name
    line: int
    # "module": runs when `source` is imported; "function": when a function of it runs;
    # "typing": never (under `if TYPE_CHECKING:`).
    level: str

    def __str__(self) -> str:
        where = "" if self.level == "module" else f" ({self.level}-level)"
        return f"{self.source}:{self.line} imports {self.target}{where}"


def package_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its __init__.py)."""
    modules = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


class _ImportVisitor(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, known: set[str]) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.known = known
        self.functions = 0  # > 0 inside a function body
        self.typing = 0  # > 0 inside an `if TYPE_CHECKING:` block
        self.imports: list[Import] = []

    def _add(self, name: str, line: int) -> None:
        if _within(name, PACKAGE):
            # `import a.b.c` or `from a.b import c` where c is a function: the module defining it.
            while name not in self.known and "." in name:
                name = name.rpartition(".")[0]
        level = "typing" if self.typing else "function" if self.functions else "module"
        self.imports.append(Import(self.module, name, line, level))

    def _function(self, node: ast.AST) -> None:
        self.functions += 1
        self.generic_visit(node)
        self.functions -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            self.typing += 1
            for child in node.body:
                self.visit(child)
            self.typing -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parent = self.package.split(".")[: len(self.package.split(".")) - node.level + 1]
            base = ".".join([*parent, *([base] if base else [])])
        for alias in node.names:
            candidate = f"{base}.{alias.name}"
            self._add(candidate if candidate in self.known else base, node.lineno)


def package_imports(root: Path = ROOT) -> list[Import]:
    """Every import statement in the package, at any level, resolved to absolute names."""
    modules = package_modules(root)
    known = set(modules)
    out = []
    for name, path in modules.items():
        visitor = _ImportVisitor(name, path.name == "__init__.py", known)
        visitor.visit(ast.parse(path.read_text(), filename=str(path)))
        out.extend(visitor.imports)
    return out


def import_cycles(imports: list[Import], levels: tuple[str, ...]) -> list[list[str]]:
    """Cycles among gsc_pipeline modules through imports at `levels`, each as a -> ... -> a."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.level in levels and _within(imp.target, PACKAGE) and imp.target != imp.source:
            graph.setdefault(imp.source, set()).add(imp.target)
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycle = path[path.index(nxt) :] + [nxt]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    cycles.append(cycle)
            elif nxt not in done:
                visit(nxt, [*path, nxt])
        done.add(node)

    for start in sorted(graph):
        if start not in done:
            visit(start, [start])
    return cycles


def layering_violations(imports: list[Import]) -> list[str]:
    """Imports (at any level: a function-level import still points where it points) that break
    the layering."""
    bad = []
    for imp in imports:
        src, dst = imp.source, imp.target
        if _within(src, PLAIN_LAYERS) and (_within(dst, UPPER) or _within(dst, "dagster")):
            bad.append(f"{imp}: the plain layers import neither Dagster nor anything above them")
        if (
            _within(src, "gsc_pipeline.defs")
            and _within(dst, UPPER)
            and not _within(dst, "gsc_pipeline.defs")
        ):
            bad.append(f"{imp}: defs/ is the Dagster wiring, below the component and the tools")
        if _within(dst, "gsc_pipeline.tools") and not _within(
            src, ("gsc_pipeline.tools", "gsc_pipeline.cli")
        ):
            bad.append(f"{imp}: only the CLI runs the tooling")
        if (
            _within(src, "gsc_pipeline.emulator")
            and _within(dst, PACKAGE)
            and not _within(dst, "gsc_pipeline.emulator")
        ):
            bad.append(f"{imp}: the emulator imports nothing of the pipeline")
        if _within(dst, "gsc_pipeline.emulator") and not _within(
            src, ("gsc_pipeline.emulator", "gsc_pipeline.tools", "gsc_pipeline.cli")
        ):
            bad.append(f"{imp}: the pipeline imports nothing of the emulator")
    return bad


def test_the_code_location_loads_no_tooling_and_no_tooling_dependency(tmp_path):
    """A production import (the defs folder, and a declaration named by GSC_PIPELINE_CONFIG,
    its assets, checks, sensors and schedules resolved) never touches the tooling or its extras."""
    script = """
import json, sys
from gsc_pipeline.definitions import defs, build_definitions
from gsc_pipeline.config import BUNDLED_DEMO_CONFIG, load_config
defs.get_repository_def()
build_definitions(load_config(BUNDLED_DEMO_CONFIG)).get_repository_def()
print(json.dumps(sorted(sys.modules)))
"""
    env = {k: v for k, v in os.environ.items() if k != "GSC_PIPELINE_CONFIG"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=240, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert "gsc_pipeline.defs.assets" in loaded  # it did load the pipeline
    forbidden = (*TOOLING_DEPENDENCIES, "gsc_pipeline.tools", "gsc_pipeline.emulator")
    assert [m for m in loaded if _within(m, forbidden)] == []
    # The DuckDB backend imports duckdb on first use: a run writing to PostgreSQL never does.
    assert "duckdb" not in loaded


def _show(cycles: list[list[str]]) -> str:
    return "\n".join(" -> ".join(c) for c in cycles)


def test_module_level_imports_form_no_cycle():
    cycles = import_cycles(package_imports(), ("module",))
    assert cycles == [], f"import cycles:\n{_show(cycles)}"


def test_no_cycle_is_hidden_in_a_function_level_import():
    """An import moved into a function hides a cycle from Python, not from the design (bench.py
    <-> bench_run.py was one): move the shared piece down instead."""
    cycles = import_cycles(package_imports(), ("module", "function"))
    assert cycles == [], f"import cycles through function-level imports:\n{_show(cycles)}"


def test_imports_point_down():
    violations = layering_violations(package_imports())
    assert violations == [], "\n".join(violations)


def test_the_rules_catch_a_cycle_and_an_upward_import(tmp_path):
    """The same walk over a copy of the package with bad imports injected: it must fail."""
    package = tmp_path / PACKAGE
    for path in package_modules().values():
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    checks = package / "defs" / "checks.py"
    (package / "defs" / "keys.py").write_text(
        (package / "defs" / "keys.py").read_text()
        + "\nfrom gsc_pipeline.defs.checks import *  # noqa\n"
    )
    checks.write_text(checks.read_text() + "\nfrom gsc_pipeline.defs.keys import *  # noqa\n")
    warehouse = package / "warehouse" / "base.py"
    warehouse.write_text(
        warehouse.read_text() + "\n\ndef f():\n    from gsc_pipeline.tools.launch import x\n"
    )
    scenario = package / "tools" / "bench" / "scenario.py"
    scenario.write_text(
        scenario.read_text() + "\n\ndef g():\n    from gsc_pipeline.tools.bench import command\n"
    )
    imports = package_imports(tmp_path)
    cycles = [set(c) for c in import_cycles(imports, ("module",))]
    assert cycles == [{"gsc_pipeline.defs.keys", "gsc_pipeline.defs.checks"}]
    hidden = [set(c) for c in import_cycles(imports, ("module", "function"))]
    assert {"gsc_pipeline.tools.bench.command", "gsc_pipeline.tools.bench.scenario"} in hidden
    violations = layering_violations(imports)
    assert any(v.startswith("gsc_pipeline.warehouse.base:") for v in violations), violations


def test_a_production_install_leaves_the_tooling_extras_out():
    """Core dependencies hold none of the tooling's; the extras hold exactly what the CLI checks
    for; `test` (what `make` installs) pulls both; the image installs neither."""
    from gsc_pipeline.cli import EXTRA_MODULES

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[=<>\[ ;]", r)[0].lower() for r in requirements}

    distributions = importlib.metadata.packages_distributions()
    for extra, modules in EXTRA_MODULES.items():
        wanted = {d.lower() for m in modules for d in distributions[m]}
        assert names(extras[extra]) == wanted, extra
        assert not names(project["dependencies"]) & wanted, extra
        assert all("==" in r for r in extras[extra]), "pins stay exact"
    assert "gsc-pipeline[bench,emulator]" in extras["test"]
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    installs = re.findall(r"pip install[^\n]*", dockerfile)
    assert installs and all("bench" not in i and "emulator" not in i for i in installs)


# The bench measures the built-in backends by name (`--warehouse duckdb|postgres`) and makes
# each one's scratch database itself: tooling about two backends, not a branch in the pipeline.
_BACKEND_NAMES_ALLOWED = ("gsc_pipeline.warehouse", "gsc_pipeline.tools.bench")


def dialect_branches(root: Path = ROOT) -> list[str]:
    """Code outside the warehouse package that asks which backend it has: reads `.dialect`,
    or compares something with a backend's name."""
    from gsc_pipeline.warehouse import BACKENDS

    names = set(BACKENDS)
    found = []
    for module, path in package_modules(root).items():
        if _within(module, _BACKEND_NAMES_ALLOWED) or _within(module, "gsc_pipeline.emulator"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "dialect":
                found.append(f"{module}:{node.lineno} reads .dialect")
            if isinstance(node, ast.Compare):
                for side in (node.left, *node.comparators):
                    if isinstance(side, ast.Constant) and side.value in names:
                        found.append(f"{module}:{node.lineno} compares with {side.value!r}")
    return found


def test_no_module_outside_the_warehouse_branches_on_the_backend():
    """Each backend owns what differs (types, locks, files, advice): adding one is its module
    and its line in `warehouse.registry`, not an `if` in every module that writes SQL."""
    found = dialect_branches()
    assert found == [], "\n".join(found)


def _module_string_constants(tree: ast.Module) -> list[tuple[int, str, str]]:
    out = []
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out.append((node.lineno, target.id, node.value.value))
    return out


_CRON = re.compile(r"^\S+( \S+){4}$")


def test_tags_crons_timezone_and_identifier_rule_are_each_stated_once():
    """Run tags and crons live in defs/names.py; the timezone is constants.GOOGLE_TIMEZONE under
    that one name; the identifier rule is constants.IDENTIFIER_PATTERN. The emulator, which
    imports nothing of the pipeline, keeps its own copies."""
    found = []
    for module, path in package_modules().items():
        if _within(module, "gsc_pipeline.emulator"):
            continue
        text = path.read_text()
        tree = ast.parse(text)
        if module != "gsc_pipeline.defs.names":
            for line, name, value in _module_string_constants(tree):
                if value.startswith(("gsc/", "dagster/")) or _CRON.match(value):
                    found.append(f"{module}:{line} {name} = {value!r} (a tag or cron)")
        if module != "gsc_pipeline.constants":
            if "America/Los_Angeles" in text:
                found.append(f"{module}: the timezone spelled out")
            if "[a-z][a-z0-9_]*" in text:
                found.append(f"{module}: the identifier pattern spelled out")
        for node in ast.walk(tree):
            if isinstance(node, ast.alias) and node.name == "GOOGLE_TIMEZONE" and node.asname:
                found.append(f"{module}: GOOGLE_TIMEZONE imported as {node.asname}")
    assert found == [], "\n".join(found)
