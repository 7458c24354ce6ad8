"""Mutation score of some modules on a random sample of their mutants (mutmut 2's mutation engine).

Each sampled mutant is written into its file, the given tests run in a subprocess (`pytest -x`), and the file is
restored. It edits the tree it runs in: run it in a scratch clone, never in your working copy.

    git clone . /tmp/mut && cd /tmp/mut            # an editable install must point at this clone
    pip install mutmut==2.5.1
    python tools/mutation_sample.py --files runtime/store/*.py --tests tests/store/test_store.py \
        tests/store/test_catalog.py --sample 70 --out before.jsonl
    # ...write the tests the survivors call for, then re-test only the survivors of the same sample:
    python tools/mutation_sample.py ... --only-survivors before.jsonl --out after.jsonl

Results: one JSON line per mutant (file, line, status killed/survived/timeout, the diff). A survivor is a test
that could not fail, or an equivalent mutant (a type annotation, a timeout's exact value): read each.
"""

import argparse
import difflib
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from mutmut import ALL, Context, list_mutations, mutate

p = argparse.ArgumentParser()
p.add_argument("--files", nargs="+", required=True)
p.add_argument("--tests", nargs="+", required=True)
p.add_argument("--sample", type=int, default=80)
p.add_argument("--seed", type=int, default=28)
p.add_argument("--out", required=True)
p.add_argument("--only-survivors", help="a previous results file: re-test its survivors only")
p.add_argument("--timeout", type=int, default=120)
a = p.parse_args()

ids = []
for f in a.files:
    ids += list_mutations(Context(filename=f, mutation_id=ALL))
print(f"{len(ids)} mutants in {a.files}", flush=True)
sample = random.Random(a.seed).sample(ids, min(a.sample, len(ids)))
if a.only_survivors:
    prev = [json.loads(line) for line in Path(a.only_survivors).read_text().splitlines()]
    keep = {(r["file"], r["line_number"], r["index"]) for r in prev if r["status"] == "survived"}
    sample = [m for m in sample if (m.filename, m.line_number, m.index) in keep]
with open(a.out, "w") as out:
    for n, mid in enumerate(sample, 1):
        original = Path(mid.filename).read_text()
        ctx = Context(filename=mid.filename, mutation_id=mid)
        mutated, _ = mutate(ctx)
        diff = [
            line
            for line in difflib.unified_diff(original.splitlines(), mutated.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and line[:3] not in ("+++", "---")
        ]
        Path(mid.filename).write_text(mutated)
        started = time.time()
        try:
            rc = subprocess.run(
                [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *a.tests],
                capture_output=True,
                timeout=a.timeout,
            ).returncode
            status = "survived" if rc == 0 else "killed"
        except subprocess.TimeoutExpired:
            status = "timeout"
        finally:
            Path(mid.filename).write_text(original)
        rec = {
            "file": mid.filename,
            "line_number": mid.line_number,
            "index": mid.index,
            "status": status,
            "seconds": round(time.time() - started, 1),
            "diff": diff,
        }
        out.write(json.dumps(rec) + "\n")
        out.flush()
        print(n, len(sample), status, mid.filename, mid.line_number, diff, flush=True)
