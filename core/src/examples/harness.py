# Runs the docstring examples (doctests) of some functions of one Python file against their code.
# ClarifyCoder's `examples` module writes the file as `module.py`, the wanted functions (qualified
# name, a tab, the line of `def`) one per line as `targets.txt` and the file's directory as
# `syspath.txt` and the seconds one function's examples may take as `budget.txt`, then runs this
# script in its sandbox. It prints lines that start with a marker (MARK), each a JSON object, as
# it goes: {"start": target} before a target's examples, {"done": target, "events": [...]} for a
# target whose examples could run, {"slow": target} for one that ran past its budget (stopped,
# and the next target goes on), and {"end": true} last. A run killed part way keeps what it
# printed, and its last "start" names the function that was running.
#
# Only the file's top-level imports, function and class definitions and assignments of literal
# values are executed, each on its own (one that fails leaves the others): a script's other
# top-level statements (a call, a `main()` guard) never run. Executing those still runs code: the
# imported modules, class bodies, decorators and default values.
import __future__
import ast
import doctest
import json
import os
import signal
import sys

# This script's own directory comes first on the path; the checked file's neighbours may be
# called `main` or `module` too, so it goes.
del sys.path[0]

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
# Exceptions that say the example could not run here (an import, a name defined elsewhere, an
# unfinished function, no network, `await` outside a coroutine), not that it disagrees with the
# code. Subclasses count too (ModuleNotFoundError, ConnectionError, URLError…).
ENVIRONMENT = (
    NameError,
    ImportError,
    NotImplementedError,
    AttributeError,
    RecursionError,
    MemoryError,
    OSError,
    SyntaxError,
)


def subclasses(cls):
    yield cls
    for sub in cls.__subclasses__():
        yield from subclasses(sub)


ENVIRONMENT_NAMES = {cls.__name__ for root in ENVIRONMENT for cls in subclasses(root)}
# What a verdict keeps of an example's text: enough for a question.
KEEP = 2000
# Marks the result line among whatever the checked code prints.
MARK = "\x00clarifycoder-examples\x00"


class TookTooLong(KeyboardInterrupt):
    """Raised in a target's examples when its budget is spent. A KeyboardInterrupt, so that
    doctest does not record it as the example's exception."""


def alarm(signum, frame):
    raise TookTooLong()


def emit(obj):
    out = sys.__stdout__
    out.write("\n" + MARK + json.dumps(obj) + "\n")
    out.flush()


def literal(node):
    try:
        ast.literal_eval(node)
        return True
    except Exception:
        return False


def kept(stmt):
    if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if isinstance(stmt, ast.Assign):
        return literal(stmt.value)
    if isinstance(stmt, ast.AnnAssign):
        return stmt.value is not None and literal(stmt.value)
    return False


def is_stub(fn):
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
        body = body[1:]
    for stmt in body:
        if isinstance(stmt, ast.Pass):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and stmt.value.value is Ellipsis:
            continue
        if isinstance(stmt, ast.Raise) and stmt.exc is not None:
            exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
            if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
                continue
        return False
    return True


def definitions(tree):
    """Top-level functions and methods of top-level classes, by qualified name."""
    out = {}
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[stmt.name] = stmt
        elif isinstance(stmt, ast.ClassDef):
            for inner in stmt.body:
                if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out[stmt.name + "." + inner.name] = inner
    return out


# The run's directory, as resolved and as given: the sandbox starts the harness in it and sets
# HOME to it.
SANDBOX = [p for p in {os.getcwd(), os.environ.get("HOME", "")} if len(p) > 1]


class Recorder(doctest.DocTestRunner):
    def __init__(self):
        super().__init__(verbose=False, optionflags=FLAGS)
        self.events = []

    def report_start(self, out, test, example):
        pass

    def report_success(self, out, test, example, got):
        self.events.append({"kind": "ok"})

    def report_failure(self, out, test, example, got):
        # A result that shows the sandbox's own directory (the working directory, HOME) says
        # where the example ran, not what the docstring means.
        if any(path in got for path in SANDBOX):
            self.events.append({"kind": "environment"})
            return
        # An example that expects an exception and got another one: an environment error (a
        # missing name) says nothing.
        if example.exc_msg is not None and got.startswith("Traceback"):
            last = got.strip().split("\n")[-1].split(":")[0].split(".")[-1]
            if last in ENVIRONMENT_NAMES:
                self.events.append({"kind": "environment"})
                return
        self.events.append(
            {"kind": "fail", "source": example.source[:KEEP], "want": example.want[:KEEP], "got": got[:KEEP]}
        )

    def report_unexpected_exception(self, out, test, example, exc_info):
        if issubclass(exc_info[0], ENVIRONMENT):
            self.events.append({"kind": "environment"})
            return
        self.events.append(
            {"kind": "raised", "source": example.source[:KEEP], "want": example.want[:KEEP], "got": exc_info[0].__name__}
        )


def main():
    source = open("module.py", encoding="utf-8").read()
    targets = [t for t in open("targets.txt", encoding="utf-8").read().split("\n") if t]
    budget = float(open("budget.txt", encoding="utf-8").read())
    # The file's own directory, so that it can import its neighbours.
    sys.path[0:0] = [p for p in open("syspath.txt", encoding="utf-8").read().split("\n") if p]
    tree = ast.parse(source)
    namespace = {"__name__": "clarifycoder_examples", "__builtins__": __builtins__}
    sys.modules["clarifycoder_examples"] = type(sys)("clarifycoder_examples")
    sys.modules["clarifycoder_examples"].__dict__.update(namespace)
    namespace = sys.modules["clarifycoder_examples"].__dict__
    # `from __future__ import annotations` and the like hold for every statement of the file.
    future = 0
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            for alias in stmt.names:
                feature = getattr(__future__, alias.name, None)
                future |= getattr(feature, "compiler_flag", 0)
    for stmt in tree.body:
        if not kept(stmt):
            continue
        module = ast.Module(body=[stmt], type_ignores=[])
        try:
            exec(compile(module, "module.py", "exec", flags=future, dont_inherit=True), namespace)
        except BaseException:
            pass
    defs = definitions(tree)
    finder = doctest.DocTestFinder(recurse=False)
    for key in targets:
        target, line = key.split("\t")
        node = defs.get(target)
        # An earlier definition of a name the file defines again is not the one the module keeps.
        if node is None or node.lineno != int(line) or is_stub(node):
            continue
        obj = namespace
        try:
            for part in target.split("."):
                obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
        except (KeyError, AttributeError):
            continue
        runner = Recorder()
        emit({"start": key})
        try:
            # Again for each target: the checked code may have set a handler of its own.
            signal.signal(signal.SIGALRM, alarm)
            signal.setitimer(signal.ITIMER_REAL, budget)
            try:
                for test in finder.find(obj, target, globs=dict(namespace)):
                    runner.run(test, out=lambda s: None, clear_globs=True)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except TookTooLong:
            emit({"slow": key})
            continue
        except BaseException:
            continue
        events = runner.events
        if not events or any(e["kind"] == "environment" for e in events):
            continue
        emit({"done": key, "events": events})
    emit({"end": True})
    # Leftover threads and exit handlers of the checked code must not hold the result back.
    os._exit(0)


main()
