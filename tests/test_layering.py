"""The layering the README states, checked over every import in the packages.

Five layers, each importing only its own layer and those below (README, "Layout"):

1. foundation: values, names, configuration and public models;
2. shared state: the result store, the team queues, telemetry, the cache;
3. the engine: ``schedulers`` and ``workers``, which reach each other only through the few
   interface modules pinned below;
4. the front door: submission, the HTTP API, and the Python client (which, shipped to
   teams, imports nothing but the foundation);
5. the top: the CLI and the local stack, which start everything.

Every ``import`` counts, inside functions and ``TYPE_CHECKING`` blocks too, and no module may
take part in an import circle. A new import that breaks a rule fails here, naming the line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("broker", "schedulers", "workers")

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",
        (
            "broker",  # the package itself: __version__
            "broker.errors",
            "broker.ids",
            "broker.jsontext",
            "broker.money",
            "broker.states",
            "broker.redis_keys",
            "broker.pipelines",
            "broker.config",
            "broker.schemas",
            "broker.webhooks",
        ),
    ),
    (
        "shared state",
        (
            "broker.store",
            "broker.queues",
            "broker.deltas",
            "broker.telemetry",
            "broker.cache",
            "broker.embeddings",
        ),
    ),
    ("engine", ("schedulers", "workers")),
    ("front door", ("broker.submission", "broker.dropin", "broker.api", "broker.client")),
    ("top", ("broker.cli", "broker.local")),
)

#: What ``workers`` may import from ``schedulers``, and the other way round.
ENGINE_INTERFACES = {
    ("workers", "schedulers"): {
        "schedulers.budgets",  # settling a reservation
        "schedulers.feedback",  # slots, fairness corrections, rate-limit signals
        "schedulers.ratelimits",  # the breakers' scope names
        "schedulers.ticket",  # the task's payload
    },
    ("schedulers", "workers"): {
        "workers.breakers",  # routing skips open breakers
        "workers.celery_app",  # sending tasks
        "workers.providers.base",  # RateSignal
        "workers.webhooks",  # sending webhook deliveries
    },
}

#: Packages that may import only from the layers named (beyond themselves).
ONLY_FROM = {"broker.client": ("foundation",)}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterable[tuple[str, int]]:
    """(module imported, line) for every absolute import of our packages in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from broker import redis_keys`` imports the module broker.redis_keys;
            # ``from broker.store import Database`` a name, resolved to its module below
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES:
                yield name, node.lineno


def import_graph() -> dict[str, dict[str, int]]:
    """module → {imported module → first line}, imported names resolved to modules."""
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, dict[str, int]] = {}
    for module, path in files.items():
        edges = graph.setdefault(module, {})
        for name, line in imports_of(path):
            while name not in files and "." in name:  # a name imported from a module
                name = name.rsplit(".", 1)[0]
            # a package's own ``__init__`` (run on the way to any of its modules) is no edge
            if name in files and name != module and not module.startswith(name + "."):
                edges.setdefault(name, line)
    return graph


def group_of(module: str) -> tuple[int, str]:
    """(layer index, the group's name) of the most specific group containing ``module``."""
    best: tuple[int, str] | None = None
    for index, (_, groups) in enumerate(LAYERS):
        for group in groups:
            if (module == group or module.startswith(group + ".")) and (
                best is None or len(group) > len(best[1])
            ):
                best = (index, group)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add its package to LAYERS")
    return best


def violations(graph: dict[str, dict[str, int]]) -> list[str]:
    found = []
    for module, edges in sorted(graph.items()):
        layer, group = group_of(module)
        for target, line in sorted(edges.items()):
            target_layer, target_group = group_of(target)
            where = f"{module}:{line} imports {target}"
            if target_layer > layer:
                found.append(
                    f"{where}: {LAYERS[layer][0]} may not import from {LAYERS[target_layer][0]}"
                )
            allowed_layers = ONLY_FROM.get(group)
            if allowed_layers and target_group != group:
                if LAYERS[target_layer][0] not in allowed_layers:
                    found.append(f"{where}: {group} imports only from {allowed_layers}")
            pair = (module.split(".")[0], target.split(".")[0])
            if pair in ENGINE_INTERFACES and target not in ENGINE_INTERFACES[pair]:
                found.append(
                    f"{where}: {pair[0]} reaches {pair[1]} only through "
                    f"{sorted(ENGINE_INTERFACES[pair])}"
                )
    return found


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_import_follows_the_layering() -> None:
    assert violations(import_graph()) == []


def test_no_module_takes_part_in_an_import_circle() -> None:
    assert circles(import_graph()) == []


@pytest.mark.parametrize(
    ("module", "target", "rule"),
    [
        ("broker.store.queries", "broker.api.app", "shared state may not import from front door"),
        ("broker.config.settings", "schedulers.loop", "foundation may not import from engine"),
        ("schedulers.loop", "broker.local.stack", "engine may not import from top"),
        ("workers.execution", "schedulers.loop", "workers reaches schedulers only through"),
        ("broker.client._sync", "broker.store.db", "broker.client imports only from"),
    ],
)
def test_a_bad_import_is_caught(module: str, target: str, rule: str) -> None:
    graph = import_graph()
    graph[module] = {**graph[module], target: 1}
    assert any(rule in v for v in violations(graph)), violations(graph)


def test_a_circle_is_caught() -> None:
    graph = import_graph()
    graph["broker.api.resources"] = {**graph["broker.api.resources"], "broker.api.app": 1}
    assert any({"broker.api.app", "broker.api.resources"} <= set(c) for c in circles(graph))
