"""Writes a HumanEvalComm-format file from HumanEval, for benchmarking the evaluator's throughput
when the public HumanEvalComm file is not at hand. Evaluation only: never train on its output.

Each problem keeps its prompt, gets `test_case` from the `assert candidate(X) == Y` lines of its
tests, and one modified prompt, `prompt1p` (incomplete): the docstring's examples removed and the
function renamed to `candidate`, as HumanEvalComm's 1p prompts often do.

usage: python3 scripts/humaneval-to-comm.py HumanEval.jsonl.gz OUT.jsonl [LIMIT]
"""
import gzip
import json
import re
import sys

src, out = sys.argv[1], sys.argv[2]
limit = int(sys.argv[3]) if len(sys.argv) > 3 else None
assert_re = re.compile(r"^\s*assert\s+candidate\((.*)\)\s*==\s*(.+?)\s*(?:,\s*['\"].*)?$")
rows = []
with gzip.open(src, "rt") as f:
    for line in f:
        p = json.loads(line)
        cases = []
        for t in p["test"].splitlines():
            m = assert_re.match(t)
            if m:
                cases.append({"input": m.group(1), "output": m.group(2), "relation": "=="})
        if not cases:
            continue
        prompt = p["prompt"]
        lines = prompt.splitlines(keepends=True)
        kept, skipping = [], False
        for l in lines:
            s = l.strip()
            if s.startswith(">>>") or s.lower().startswith(("for example", "example")):
                skipping = True
            if skipping and (s.endswith('"""') or s.endswith("'''")):
                kept.append(l[: len(l) - len(l.lstrip())] + s[-3:] + "\n")
                skipping = False
                continue
            if not skipping:
                kept.append(l)
        p1p = "".join(kept).replace(f"def {p['entry_point']}(", "def candidate(")
        rows.append({"name": p["task_id"], "entry_point": p["entry_point"], "prompt": prompt,
                     "solution": p["canonical_solution"], "test_case": cases, "prompt1p": p1p})
        if limit and len(rows) >= limit:
            break
with open(out, "w") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
print(f"wrote {len(rows)} problems to {out}", file=sys.stderr)
