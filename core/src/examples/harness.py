# Runs the docstring examples (doctests) of some functions of one Python file against their code.
# ClarifyCoder's `examples` module writes the file as `module.py`, the wanted functions' qualified
# names one per line as `targets.txt` and the file's directory as `syspath.txt`, then runs this
# script in its sandbox. It prints one line,
# `RESULT` and a JSON object: for each target that could be run, its examples' outcomes.
#
# Only the file's top-level imports, function and class definitions and assignments of literal
# values are executed, each on its own (one that fails leaves the others): a script's other
# top-level statements (a call, a `main()` guard) never run.
import ast
import doctest
import json
import sys

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
# Exceptions that say the example could not run here (an import, a name defined elsewhere, an
# unfinished function), not that it disagrees with the code.
ENVIRONMENT = {
    "NameError",
    "ImportError",
    "ModuleNotFoundError",
    "NotImplementedError",
    "AttributeError",
    "RecursionError",
    "MemoryError",
    "OSError",
    "FileNotFoundError",
    "PermissionError",
}


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


class Recorder(doctest.DocTestRunner):
    def __init__(self):
        super().__init__(verbose=False, optionflags=FLAGS)
        self.events = []

    def report_start(self, out, test, example):
        pass

    def report_success(self, out, test, example, got):
        self.events.append({"kind": "ok"})

    def report_failure(self, out, test, example, got):
        self.events.append({"kind": "fail", "source": example.source, "want": example.want, "got": got})

    def report_unexpected_exception(self, out, test, example, exc_info):
        self.events.append(
            {"kind": "raised", "source": example.source, "want": example.want, "got": exc_info[0].__name__}
        )


def main():
    source = open("module.py", encoding="utf-8").read()
    targets = [t for t in open("targets.txt", encoding="utf-8").read().split("\n") if t]
    # The file's own directory, so that it can import its neighbours.
    sys.path[1:1] = [p for p in open("syspath.txt", encoding="utf-8").read().split("\n") if p]
    tree = ast.parse(source)
    namespace = {"__name__": "clarifycoder_examples", "__builtins__": __builtins__}
    sys.modules["clarifycoder_examples"] = type(sys)("clarifycoder_examples")
    sys.modules["clarifycoder_examples"].__dict__.update(namespace)
    namespace = sys.modules["clarifycoder_examples"].__dict__
    for stmt in tree.body:
        if not kept(stmt):
            continue
        module = ast.Module(body=[stmt], type_ignores=[])
        try:
            exec(compile(module, "module.py", "exec"), namespace)
        except BaseException:
            pass
    defs = definitions(tree)
    finder = doctest.DocTestFinder(recurse=False)
    results = {}
    for target in targets:
        node = defs.get(target)
        if node is None or is_stub(node):
            continue
        obj = namespace
        try:
            for part in target.split("."):
                obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
        except (KeyError, AttributeError):
            continue
        runner = Recorder()
        try:
            for test in finder.find(obj, target, globs=dict(namespace)):
                runner.run(test, out=lambda s: None, clear_globs=True)
        except BaseException:
            continue
        events = runner.events
        if not events or any(e["kind"] == "raised" and e["got"] in ENVIRONMENT for e in events):
            continue
        results[target] = events
    sys.stdout.write("RESULT" + json.dumps(results) + "\n")


main()
