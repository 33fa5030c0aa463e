"""Compare the metrics JSON files of two pipeline runs (e.g. before and after a refactor): same keys, same numbers.

    python benchmarks/compare_metrics.py BEFORE_DIR AFTER_DIR [--rtol 1e-9]

Every `*_metrics.json` under BEFORE_DIR is compared with the file at the same relative path under AFTER_DIR. Timing fields
(keys naming seconds) and cache folders (keys `folder`, `folders`: they name the run's own cache) are left out; every other
number must agree within `rtol` (relative) and every other value exactly. Exits 1 on any difference, listing each.
"""
import argparse, json, math, sys
from pathlib import Path

SKIP = ('seconds', 'folder', 'folders')


def skipped(key):
    "Whether a key holds timing or a cache path"
    return any(s in str(key) for s in SKIP)


def diff(a, b, rtol, path=''):
    "The differences between JSON values `a` and `b`, as lines"
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}: key {k!r} only in {'before' if k in a else 'after'}" for k in set(a) ^ set(b) if not skipped(k)]
        return out + [d for k in a.keys() & b.keys() if not skipped(k) for d in diff(a[k], b[k], rtol, f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b): return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, rtol, f"{path}[{i}]")]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        if math.isnan(a) and math.isnan(b): return []
        return [] if math.isclose(a, b, rel_tol=rtol, abs_tol=0) else [f"{path}: {a!r} != {b!r}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('before', type=Path); ap.add_argument('after', type=Path)
    ap.add_argument('--rtol', type=float, default=1e-9, help='relative tolerance of numbers (default 1e-9)')
    a = ap.parse_args(argv)
    files = sorted(p.relative_to(a.before) for p in a.before.rglob('*_metrics.json'))
    if not files: sys.exit(f"no *_metrics.json under {a.before}")
    bad = 0
    for rel in files:
        other = a.after/rel
        if not other.exists(): print(f"{rel}: MISSING after"); bad += 1; continue
        d = diff(json.loads((a.before/rel).read_text()), json.loads(other.read_text()), a.rtol)
        print(f"{rel}: {'same' if not d else f'{len(d)} difference(s)'}")
        for line in d[:20]: print("   ", line)
        bad += bool(d)
    print(f"{len(files) - bad} of {len(files)} metrics files the same (timing and cache paths left out, rtol {a.rtol})")
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
