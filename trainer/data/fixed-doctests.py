#!/usr/bin/env python3
"""Clear twins of the specs' contradicting examples.

A spec's 1c variant often states the behaviour precisely and then shows a doctest whose expected
output contradicts it. Run that doctest against the spec's real implementation and write what it
really prints: the result is the same docstring with an example that agrees with its text, a clear
specification that differs from the unclear one only in the output line. Each such pair becomes a
spec (its source carries the corrected docstring; its one variant is the original 1c), so that
`clarifycoder-trainer specs` makes the clear and the unclear row from it as from any other spec,
dev-set overlaps dropped there.

    python3 trainer/data/fixed-doctests.py trainer/data/app-specs-{a,b,f,g,h}.jsonl \
        > data/s5/app-specs-i.jsonl

A stage trained on these pairs was measured and not shipped (BENCHMARKS.md, "Clear twins of the
contradicting examples").

Variants whose examples all pass already (the contradiction is elsewhere), raise, print nothing
different or take more than a second are skipped; the counts go to stderr.
"""

import ast
import doctest
import json
import signal
import sys
import textwrap


class Recorder(doctest.DocTestRunner):
    """Records what each failing example really printed; an exception spoils the variant."""

    def __init__(self):
        super().__init__(verbose=False, optionflags=doctest.ELLIPSIS)
        self.got = {}
        self.broken = False

    def report_failure(self, out, test, example, got):
        self.got[id(example)] = got

    def report_unexpected_exception(self, out, test, example, exc_info):
        self.broken = True


def timeout(signum, frame):
    raise TimeoutError


def corrected(source, docstring):
    """The docstring with every failing example's output replaced by the real one, or None."""
    namespace = {}
    exec(compile(source, "<spec>", "exec"), namespace)
    test = doctest.DocTestParser().get_doctest(docstring, namespace, "spec", None, 0)
    if not test.examples:
        return None
    runner = Recorder()
    signal.alarm(1)
    try:
        runner.run(test, out=lambda s: None, clear_globs=False)
    finally:
        signal.alarm(0)
    if runner.broken or not runner.got:
        return None
    lines = docstring.split("\n")
    # Replace from the last example up, so that earlier line numbers stay valid.
    for example in reversed(test.examples):
        got = runner.got.get(id(example))
        if got is None:
            continue
        if not got.strip():
            return None
        start = example.lineno + example.source.count("\n")
        end = start + example.want.count("\n")
        indent = " " * example.indent
        lines[start:end] = [indent + line for line in got.rstrip("\n").split("\n")]
    return "\n".join(lines)


def with_docstring(source, docstring):
    """`source` (one function) with its docstring replaced by `docstring`."""
    tree = ast.parse(source)
    func = tree.body[0]
    doc = func.body[0]
    lines = source.split("\n")
    indent = " " * doc.col_offset
    body = textwrap.indent(docstring, indent).split("\n")
    literal = [indent + '"""' + body[0].lstrip()] + body[1:]
    if len(literal) == 1:
        literal[0] += '"""'
    else:
        literal.append(indent + '"""')
    literal = [line.rstrip() for line in literal]
    return "\n".join(lines[: doc.lineno - 1] + literal + lines[doc.end_lineno :])


def main():
    signal.signal(signal.SIGALRM, timeout)
    kept = skipped = 0
    for path in sys.argv[1:]:
        for line in open(path, encoding="utf-8"):
            spec = json.loads(line)
            for n, variant in enumerate(spec["variants"]):
                if variant["category"] != "1c" or ">>>" not in variant["docstring"]:
                    continue
                try:
                    fixed = corrected(spec["source"], variant["docstring"])
                except Exception:
                    fixed = None
                if fixed is None or fixed == variant["docstring"]:
                    skipped += 1
                    continue
                source = with_docstring(spec["source"], fixed)
                ast.parse(source)
                print(json.dumps({"id": f"{spec['id']}-dt{n}", "source": source,
                                  "variants": [variant]}))
                kept += 1
    print(f"fixed-doctests: {kept} clear twins written, {skipped} variants skipped",
          file=sys.stderr)


if __name__ == "__main__":
    main()
