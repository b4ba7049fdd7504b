"""Mutation testing of the engine's pure core: would the tests notice if this line were wrong?

    python scripts/mutation.py modules/rng.py                 # every mutant of one module, its focused tests
    python scripts/mutation.py modules/rng.py --related       # survivors also meet the golden/replay/processing tests
    python scripts/mutation.py modules/rng.py --lines 20-40   # a slice, to split a run into pieces of a few minutes
    python scripts/mutation.py modules/rng.py --list          # the mutants, without running anything
    python scripts/mutation.py --all --related --lock /tmp/serena-cpu.lock   # the full run (docs/serena.md, issue 22)

Classic mutations, applied one at a time with `ast`: comparison swaps (< <=, == !=, in / not in, is / is not),
arithmetic swaps (+ -, * /, // /, % *), integer constants +-1, True/False swapped, and/or swapped, a dropped `not`,
`return x` -> `return None`, string constants altered. Docstrings, annotations and `if TYPE_CHECKING:` blocks are left
alone; a line ending in `# pragma: no mutate` too.

Everything runs in ONE process: the module is imported once, and each mutant is applied by swapping the code objects
of its functions and methods in place (so `from modules.rng import slerp` elsewhere sees the mutant too) and
re-binding the module's other top-level values (tables built at import). Pytest runs the focused tests with `-x`;
a mutant is killed when a test fails, errors or runs past --timeout seconds. Limits: a constant another module copied
with `from ... import NAME` keeps its original value there (such a mutant may survive: the score errs low, never
high). Prints one line per survivor, then the score; exit status 0 when the score reaches --fail-under (default 0).

CPU-heavy: with --lock FILE it takes that flock(1) lock only while it runs tests, in pieces of at most
--piece-seconds (default 150), releasing it in between so other jobs get the CPU. Not part of the default test run.
"""

from __future__ import annotations

import argparse
import ast
import fcntl
import importlib
import os
import signal
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Module -> its focused tests (run first, fast), then the related tests that use it end to end (--related).
TESTS: dict[str, tuple[list[str], list[str]]] = {
    "modules/infotext.py": (
        ["test/test_infotext.py", "test/test_webui_semantics.py"],
        ["test/test_replay.py", "test/test_generation_fields.py"],
    ),
    "modules/rng.py": (
        ["test/test_rng.py", "test/test_webui_semantics.py"],
        ["test/quality/test_golden_images.py", "test/test_replay.py", "test/test_processing.py"],
    ),
    "modules/validation.py": (
        ["test/test_validation.py", "test/test_webui_semantics.py"],
        ["test/test_generation_fields.py"],
    ),
    "modules/field_types.py": (
        ["test/test_validation.py", "test/test_webui_semantics.py", "test/test_generation_fields.py"],
        ["test/test_replay.py"],
    ),
    "modules/sd_samplers.py": (
        ["test/test_samplers.py", "test/test_webui_semantics.py", "test/test_validation.py"],
        ["test/quality/test_golden_images.py", "test/test_replay.py"],
    ),
    "modules/prompt_parser.py": (
        ["test/test_prompt_parser.py"],
        ["test/test_prompt_encoding.py", "test/test_extra_networks.py"],
    ),
}
CORE = list(TESTS)

COMPARISON_SWAPS = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
ARITHMETIC_SWAPS = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.Mult,
    ast.Pow: ast.Mult,
}


@dataclass(frozen=True)
class Mutant:
    index: int  # the node's position in the walk: stable for one source text
    line: int
    description: str


class _Walker(ast.NodeVisitor):
    """Visits the nodes a mutation may touch, in a fixed order; `on_node(node)` gives (index, node) to the caller."""

    def __init__(self, skipped_lines: set[int], on_node):
        self.skipped_lines = skipped_lines
        self.on_node = on_node
        self.count = 0

    def generic_visit(self, node):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            return
        if getattr(node, "lineno", None) in self.skipped_lines:
            return
        if isinstance(node, ast.ImportFrom):
            return
        if isinstance(node, ast.ClassDef):
            # `Patch` swaps functions' code and defaults, never classes: a mutant in a class decorator
            # (`frozen=True`), its bases or a class attribute would not be applied, and would count as a survivor no
            # test can kill. A dataclass field's default is applied (it is a default of the generated __init__).
            for statement in node.body:
                if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or (
                    isinstance(statement, ast.AnnAssign) and "ClassVar" not in ast.unparse(statement.annotation)
                ):
                    self.visit(statement)
            return
        self.on_node(node)
        for name, value in ast.iter_fields(node):
            if name in ("annotation", "returns"):
                continue
            if name == "body" and isinstance(value, list) and value and _is_docstring(value[0]):
                value = value[1:]
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        self.visit(item)
            elif isinstance(value, ast.AST):
                self.visit(value)


def _is_type_checking(test) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def _is_docstring(statement) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _mutations_of(node) -> list[tuple[str, callable]]:
    """(description, apply) for every mutation of this one node; `apply` changes the node in place."""
    found = []
    if isinstance(node, ast.Compare):
        for position, operator in enumerate(node.ops):
            swapped = COMPARISON_SWAPS.get(type(operator))
            if swapped:
                found.append(
                    (
                        f"{type(operator).__name__} -> {swapped.__name__}",
                        lambda n, p=position, s=swapped: n.ops.__setitem__(p, s()),
                    )
                )
    elif isinstance(node, (ast.BinOp, ast.AugAssign)):
        swapped = ARITHMETIC_SWAPS.get(type(node.op))
        if swapped:
            found.append(
                (f"{type(node.op).__name__} -> {swapped.__name__}", lambda n, s=swapped: setattr(n, "op", s()))
            )
    elif isinstance(node, ast.BoolOp):
        other = ast.Or if isinstance(node.op, ast.And) else ast.And
        found.append((f"{type(node.op).__name__} -> {other.__name__}", lambda n, o=other: setattr(n, "op", o())))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        found.append(("not dropped", None))  # replaced by its operand: see _apply
    elif isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            found.append((f"{value} -> {not value}", lambda n: setattr(n, "value", not n.value)))
        elif isinstance(value, int):
            found.append((f"{value} -> {value + 1}", lambda n: setattr(n, "value", n.value + 1)))
            found.append((f"{value} -> {value - 1}", lambda n: setattr(n, "value", n.value - 1)))
        elif isinstance(value, float):
            found.append((f"{value} -> {value + 1}", lambda n: setattr(n, "value", n.value + 1)))
        elif isinstance(value, str):
            found.append((f"{value[:20]!r} altered", lambda n: setattr(n, "value", "XX" + n.value + "XX")))
    elif isinstance(node, ast.Return) and node.value is not None:
        is_none = isinstance(node.value, ast.Constant) and node.value.value is None
        if not is_none:
            found.append(("return None", lambda n: setattr(n, "value", ast.Constant(None))))
    return found


def _skipped_lines(source: str) -> set[int]:
    return {
        number for number, line in enumerate(source.splitlines(), 1) if line.rstrip().endswith("# pragma: no mutate")
    }


def list_mutants(source: str) -> list[Mutant]:
    tree = ast.parse(source)
    mutants: list[Mutant] = []

    def on_node(node):
        for description, _ in _mutations_of(node):
            mutants.append(Mutant(len(mutants), node.lineno, description))

    _Walker(_skipped_lines(source), on_node).visit(tree)
    return mutants


def mutated_tree(source: str, target: int) -> ast.Module:
    """The module's tree with mutant number `target` applied."""
    tree = ast.parse(source)
    counter = [0]
    replacements = []

    def on_node(node):
        for _description, apply in _mutations_of(node):
            if counter[0] == target:
                if apply is None:
                    replacements.append(node)
                else:
                    apply(node)
            counter[0] += 1

    _Walker(_skipped_lines(source), on_node).visit(tree)
    if replacements:  # a dropped `not`: the UnaryOp becomes its operand
        dropped = replacements[0]

        class Drop(ast.NodeTransformer):
            def visit_UnaryOp(self, node):
                self.generic_visit(node)
                return node.operand if node is dropped else node

        tree = Drop().visit(tree)
    return ast.fix_missing_locations(tree)


class Patch:
    """Applies a mutated module to the imported one in place, and undoes it."""

    def __init__(self, module: types.ModuleType):
        self.module = module
        self.saved_dict = dict(module.__dict__)
        self.saved_code = {}
        for _key, function in self._functions(module.__dict__, module.__name__):
            self.saved_code[function] = (function.__code__, function.__defaults__, function.__kwdefaults__)

    @staticmethod
    def _functions(namespace: dict, module_name: str):
        """(key, function) for the module's own functions and its classes' methods (properties and static/class
        methods included), and the functions their decorators wrap (`@contextmanager` keeps the body in
        `__wrapped__`: swapping only the wrapper's code would leave the body unmutated)."""

        def with_wrapped(function):
            key = function.__qualname__
            while isinstance(function, types.FunctionType):
                yield key, function
                function, key = getattr(function, "__wrapped__", None), key + ".__wrapped__"

        for value in list(namespace.values()):
            if isinstance(value, types.FunctionType) and value.__module__ == module_name:
                yield from with_wrapped(value)
            elif isinstance(value, type) and value.__module__ == module_name:
                for member in vars(value).values():
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if isinstance(member, property):
                        for accessor in (member.fget, member.fset):
                            if isinstance(accessor, types.FunctionType):
                                yield from with_wrapped(accessor)
                    elif isinstance(member, types.FunctionType):
                        yield from with_wrapped(member)

    def apply(self, tree: ast.Module) -> None:
        code = compile(tree, self.module.__file__, "exec")
        namespace = {"__name__": self.module.__name__, "__file__": self.module.__file__}
        exec(code, namespace)
        old_functions = dict(self._functions(self.saved_dict, self.module.__name__))
        for key, new in self._functions(namespace, self.module.__name__):
            old = old_functions.get(key)
            if old is not None and old.__code__.co_freevars == new.__code__.co_freevars:
                old.__code__, old.__defaults__, old.__kwdefaults__ = new.__code__, new.__defaults__, new.__kwdefaults__
        for name, value in namespace.items():
            original = self.saved_dict.get(name)
            if isinstance(original, (types.FunctionType, type, types.ModuleType)) or name.startswith("__"):
                continue
            self.module.__dict__[name] = value

    def restore(self) -> None:
        for function, (code, defaults, kwdefaults) in self.saved_code.items():
            function.__code__, function.__defaults__, function.__kwdefaults__ = code, defaults, kwdefaults
        self.module.__dict__.clear()
        self.module.__dict__.update(self.saved_dict)


class MutantTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise MutantTimeout


class _Outcome:
    """A pytest plugin that records whether any test failed (timeouts raised inside a test count as failures)."""

    def __init__(self):
        self.failed = False

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self.failed = True


def run_tests(test_files: list[str], timeout_s: float) -> str:
    """'killed', 'timeout' or 'survived'."""
    import pytest

    outcome = _Outcome()
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        code = pytest.main(
            ["-x", "-q", "-p", "no:cacheprovider", "--no-header", "-o", "console_output_style=classic", *test_files],
            plugins=[outcome],
        )
    except MutantTimeout:
        return "timeout"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if outcome.failed or code not in (0, 5):
        return "killed"
    return "survived"


def parse_lines(text: str | None) -> tuple[int, int]:
    if not text:
        return 1, 10**9
    first, _, last = text.partition("-")
    return int(first), int(last or first)


class PieceLock:
    """Holds a shared flock(1)-style lock in pieces: taken before a mutant, given up once a piece has lasted long
    enough, so a long run never keeps other jobs off the CPU for more than about one piece."""

    def __init__(self, path: str | None, piece_seconds: float):
        self.path, self.piece_seconds = path, piece_seconds
        self.handle = None
        self.taken_at = 0.0

    def before_mutant(self) -> None:
        if self.path is None:
            return
        if self.handle is not None and time.monotonic() - self.taken_at > self.piece_seconds:
            self.release()
            time.sleep(1.0)  # let a waiting job take it
        if self.handle is None:
            self.handle = open(self.path, "a")
            fcntl.flock(self.handle, fcntl.LOCK_EX)
            self.taken_at = time.monotonic()

    def release(self) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


def mutate_module(
    path: str, related: bool, lines: tuple[int, int], timeout_s: float, quiet_tests: bool, lock: PieceLock
) -> dict:
    source = (ROOT / path).read_text()
    mutants = [m for m in list_mutants(source) if lines[0] <= m.line <= lines[1]]
    focused, more = TESTS[path]
    test_files = [str(ROOT / name) for name in focused + (more if related else []) if (ROOT / name).exists()]
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    patch = Patch(module)
    lock.before_mutant()
    with _silenced(quiet_tests):
        baseline = run_tests(test_files, timeout_s * 4)
    if baseline != "survived":  # the tests must pass on the real module, or every mutant would count as killed
        raise SystemExit(f"{path}: the tests do not pass on the unmutated module ({baseline}); fix them first")
    counts = {"killed": 0, "timeout": 0, "survived": 0, "broken": 0}
    survivors = []
    started = time.perf_counter()
    for mutant in mutants:
        lock.before_mutant()
        try:
            patch.apply(mutated_tree(source, mutant.index))
        except Exception:  # the mutant cannot even be imported (e.g. a bad table): the import-time check kills it
            counts["broken"] += 1
            patch.restore()
            continue
        try:
            with _silenced(quiet_tests):
                result = run_tests(test_files, timeout_s)
        finally:
            patch.restore()
        counts[result] += 1
        if result == "survived":
            survivors.append(mutant)
            print(f"SURVIVED {path}:{mutant.line} #{mutant.index} {mutant.description}", flush=True)
    total = len(mutants)
    killed = counts["killed"] + counts["timeout"] + counts["broken"]
    score = 100.0 * killed / total if total else 100.0
    print(
        f"{path}: {total} mutants, {killed} killed ({counts['timeout']} by timeout, {counts['broken']} at import), "
        f"{len(survivors)} survived: {score:.1f} % in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return {"path": path, "mutants": total, "killed": killed, "survivors": survivors, "score": score}


class _silenced:
    """Pytest's output for each mutant goes to /dev/null unless --verbose-tests."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __enter__(self):
        if self.quiet:
            sys.stdout.flush()
            self.saved = os.dup(1), os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.close(devnull)
            self.saved_streams = sys.stdout, sys.stderr

    def __exit__(self, *exc):
        if self.quiet:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(self.saved[0], 1)
            os.dup2(self.saved[1], 2)
            os.close(self.saved[0])
            os.close(self.saved[1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"module paths, of: {', '.join(CORE)}")
    parser.add_argument("--all", action="store_true", help="every module above")
    parser.add_argument("--related", action="store_true", help="survivors of the focused tests meet the related tests")
    parser.add_argument("--lines", help="only mutants on lines FIRST-LAST")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per mutant before it counts as killed")
    parser.add_argument("--fail-under", type=float, default=0.0, help="exit 1 when a module scores below this")
    parser.add_argument("--lock", help="a lock file (flock) to hold only while testing, in pieces")
    parser.add_argument("--piece-seconds", type=float, default=150.0, help="longest hold of --lock at a time")
    parser.add_argument("--verbose-tests", action="store_true", help="show pytest's output for each mutant")
    args = parser.parse_args(argv)
    paths = CORE if args.all else args.modules
    unknown = [path for path in paths if path not in TESTS]
    if not paths or unknown:
        parser.error(f"modules: give one or more of {', '.join(CORE)} (or --all); got {', '.join(unknown) or 'none'}")
    lines = parse_lines(args.lines)
    if args.list:
        for path in paths:
            for mutant in list_mutants((ROOT / path).read_text()):
                if lines[0] <= mutant.line <= lines[1]:
                    print(f"{path}:{mutant.line} #{mutant.index} {mutant.description}")
        return 0
    os.chdir(ROOT)
    sys.path[:0] = [str(ROOT), str(ROOT / "test")]
    import modules  # noqa: F401  (portable kernels before torch, as in the suite)

    lock = PieceLock(args.lock, args.piece_seconds)
    try:
        results = [
            mutate_module(path, args.related, lines, args.timeout, not args.verbose_tests, lock) for path in paths
        ]
    finally:
        lock.release()
    return 0 if all(result["score"] >= args.fail_under for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
