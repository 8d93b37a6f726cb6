"""The package's shape, read from its source with `ast`: every import (also inside functions) goes to
the same package or a lower layer, there are no import cycles, imports inside functions are only of
optional dependencies (or of torchvision, where an option needs it), and functions and modules stay
short enough to read. cli.py's WORK table (the subcommands' modules, imported when a command runs)
counts as cli's imports."""
from __future__ import annotations

import ast
from pathlib import Path

import specrep_cli
from specrep_cli.cli import WORK

ROOT = Path(specrep_cli.__file__).parent
FORWARDER = ROOT.parent / "specrep"   # `python -m specrep`: a tiny package that forwards to specrep_cli.cli
# The layers, lowest first: a module may import its own package and anything on a lower layer only.
LAYERS = [
    # storage: atomic writes, used by checkpoint, data, report, rundir; registry: the name -> builder
    # tables of objectives, encoders and datasets;
    # figures: the names of report.json's sections and figures (config validates eval.objective_metric by them);
    # progress: a long phase's feedback (bars on a terminal, plain lines elsewhere)
    {"specrep_cli", "errors", "storage", "registry", "figures", "progress"},
    {"hydra_errors"},   # Hydra's and OmegaConf's error text, read in one place
    {"overrides"},      # the one parser of command-line overrides (Hydra's grammar); its errors name the override
    # rundir: the run dir's lock and failure record
    {"config", "runtime", "rundir"},
    # sweeps: the preflight's view of sweeps, on the composed typed config
    {"models", "data", "report", "checkpoint", "sweeps"},
    {"objectives", "export"},   # export: the models and the checkpoint meet (specrep export)
    {"eval", "load"},   # load: trained encoders for Python users (load_backbone, load_encoder)
    {"train"},
    {"cli"},
    {"__main__", "specrep"},
]
LAYER = {room: level for level, rooms in enumerate(LAYERS) for room in rooms}
OPTIONAL = {"scipy.sparse", "scipy.sparse.linalg", "scipy.sparse.csgraph", "tensorboard", "torch.utils.tensorboard",
            "wandb", "timm", "safetensors",
            "safetensors.torch",   # export's format=safetensors
            "optuna", "scipy",
            "open_clip.tokenizer",   # objective.text.tokenizer=bpe
            "webdataset.tariterators", "webdataset.shardlists", "webdataset.gopen", "webdataset",   # dataset=webdataset
            # torchvision is required, but importing it costs ~2.5 s (it pulls in torch._dynamo), more
            # than torch itself: it is imported only where an option uses it (encoder=resnet18, a download)
            "torchvision.models.resnet", "torchvision.datasets"}
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400
LONG_MODULES = {"config"}   # declarative schemas, one per option: kept whole on purpose


def modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for f in [*ROOT.rglob("*.py"), *FORWARDER.rglob("*.py")]:
        parts = list(f.relative_to(ROOT.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if package else parts)] = (f, package)
    return found


MODULES = modules()


def _targets(name: str, package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The specrep_cli modules an import statement loads."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = name.split(".") if package else name.split(".")[:-1]
        if node.level:
            base = base[:len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        names = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]
    out = []
    for t in names:
        while t not in MODULES and "." in t:
            t = t.rsplit(".", 1)[0]
        if t in MODULES and t != name:
            out.append(t)
    return out


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, (path, package) in MODULES.items():
        tree = ast.parse(path.read_text())
        graph[name] = {t for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                       for t in _targets(name, package, node)}
    graph["specrep_cli.cli"] |= {module for module, _ in WORK.values()}   # imported when the command runs
    return graph


def _room(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "specrep":   # the forwarding package is one room
        return "specrep"
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_import_goes_down_or_stays_in_its_package():
    graph = _graph()
    assert set(map(_room, graph)) <= set(LAYER), set(map(_room, graph)) - set(LAYER)
    upward = [(a, b) for a, targets in graph.items() for b in targets
              if _room(a) != _room(b) and LAYER[_room(b)] >= LAYER[_room(a)]]
    assert upward == []


def test_no_import_cycles_counting_imports_inside_functions():
    graph = _graph()
    state: dict[str, int] = {}   # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, " -> ".join(path + [node, nxt])
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def _functions(tree: ast.AST):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_imports_inside_functions_are_only_optional_dependencies():
    inner = []
    for name, (path, _) in MODULES.items():
        for fn in _functions(ast.parse(path.read_text())):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    inner += [(name, fn.name, a.name) for a in node.names if a.name not in OPTIONAL]
                elif isinstance(node, ast.ImportFrom) and (node.level or node.module not in OPTIONAL):
                    inner.append((name, fn.name, node.module))
    assert inner == []


def test_functions_and_modules_are_short_enough_to_read():
    long_functions, long_modules = [], []
    for name, (path, _) in MODULES.items():
        text = path.read_text()
        for fn in _functions(ast.parse(text)):
            if fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES:
                long_functions.append((name, fn.name, fn.end_lineno - fn.lineno + 1))
        if len(text.splitlines()) > MAX_MODULE_LINES and name.split(".")[-1] not in LONG_MODULES:
            long_modules.append((name, len(text.splitlines())))
    assert long_functions == [] and long_modules == []


def test_the_wheel_ships_every_package():
    import tomllib
    pyproject = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    packages = {name for name, (_, package) in MODULES.items() if package}
    assert packages <= listed, packages - listed
