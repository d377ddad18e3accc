"""The layout stays: an `ast` walk over vitalflow's packages enforces who may import whom.

- `connectors/` and `sinks/` are adapters: they import nothing of `flows/` or `api/` and take
  plain values (URLs, topic and database names).
- `api/` imports from `flows/` only the settings and the model, two leaves that import
  nothing of ours.
- No import cycle among our modules, imports inside functions included.

`KNOWN_EXCEPTIONS` lists the imports that still break a rule, each with why; it may only
shrink: an exception that no longer happens fails the test too, so that it is taken out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("flows", "connectors", "sinks", "api")
ADAPTERS = ("connectors", "sinks")
API_MAY_IMPORT = frozenset({"flows.settings", "flows.model"})
LEAVES = API_MAY_IMPORT

KNOWN_EXCEPTIONS = {
    # History summaries pick their values from the LOINC table; the API needs the same table.
    ("sinks.observation_history", "flows.codes_and_flags"): "CODINGS (issue 9)",
    ("sinks.observation_history", "flows.model"): "ObservationKind (issue 9)",
    # FHIR mapping and alert vocabulary are shared by the API and the flow's commands.
    ("api.routers.fhir", "flows.fhir"): "the FHIR Observation mapping (issue 9)",
    ("api.routers.alerts", "flows.alerts"): "alert ids and kinds (issue 11)",
}


def _modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _ours(name: str) -> str | None:
    """Return the module of ours `name` is or is inside of (`flows.model.Delivery`)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            target = _ours(name)
            if target is not None and target != module:
                found.add(target)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def _top(module: str) -> str:
    return module.split(".")[0]


def _broken_rules() -> set[tuple[str, str]]:
    broken = set()
    for module, targets in GRAPH.items():
        for target in targets:
            if _top(module) in ADAPTERS and _top(target) in ("flows", "api"):
                broken.add((module, target))
            if _top(module) == "api" and _top(target) == "flows" and target not in API_MAY_IMPORT:
                broken.add((module, target))
            if module in LEAVES:
                broken.add((module, target))
    return broken


def _cycles() -> list[list[str]]:
    """Return the import cycles: strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in GRAPH[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return cycles


def test_the_walk_sees_every_package_and_the_imports_it_must_judge() -> None:
    assert {_top(m) for m in MODULES} == set(PACKAGES)
    assert "flows.settings" in GRAPH["flows.cli"]
    assert "flows.model" in GRAPH["flows.receive"]
    assert "connectors.mqtt_source" in GRAPH["flows.pipeline"]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_adapters_import_nothing_of_flows_or_api(adapter: str) -> None:
    broken = {
        (m, t) for m, t in _broken_rules() if _top(m) == adapter and (m, t) not in KNOWN_EXCEPTIONS
    }
    assert not broken, f"{adapter}/ must take plain values, not import: {sorted(broken)}"


def test_the_api_imports_only_the_settings_and_the_model_of_flows() -> None:
    broken = {
        (m, t) for m, t in _broken_rules() if _top(m) == "api" and (m, t) not in KNOWN_EXCEPTIONS
    }
    assert not broken, f"api/ may import flows.settings and flows.model only: {sorted(broken)}"


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_the_settings_and_the_model_import_nothing_of_ours(leaf: str) -> None:
    assert not GRAPH[leaf], f"{leaf} imports {sorted(GRAPH[leaf])}"


def test_there_is_no_import_cycle() -> None:
    assert _cycles() == []


def test_the_known_exceptions_still_exist_so_the_list_only_shrinks() -> None:
    gone = set(KNOWN_EXCEPTIONS) - _broken_rules()
    assert not gone, f"no longer needed, take them out of KNOWN_EXCEPTIONS: {sorted(gone)}"


def test_a_cycle_is_found_by_the_walk() -> None:
    # The walk itself, on a graph with a cycle (cli <-> demo, as it once was).
    saved = dict(GRAPH)
    try:
        GRAPH["flows.cli"] = {*GRAPH["flows.cli"], "flows.commands.demo"}
        GRAPH["flows.commands.demo"] = {*GRAPH["flows.commands.demo"], "flows.cli"}
        assert ["flows.cli", "flows.commands.demo"] in _cycles()
    finally:
        GRAPH.clear()
        GRAPH.update(saved)
