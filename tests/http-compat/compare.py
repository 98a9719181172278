#!/usr/bin/env python3
"""Compare two kv_sequence.py outputs step by step.

Usage:
    python3 compare.py expected.json actual.json

Prints every difference (missing/extra/reordered steps, ok, status, and each
differing leaf of the normalized result, with its path) and exits 1 if there
is any, 0 when the two are equal (after the ignore list below). Exit 2 on
unreadable input.
"""

import json
import sys


def _mentions_permission_denied(v):
    return isinstance(v, list) and any(isinstance(e, str) and "permission denied" in e for e in v)


# Per-step paths (dotted, relative to the step entry) that are not compared
# for equality. Each maps to (check, reason): the actual value must satisfy
# check(actual) instead (check None = not checked at all). Keep this list
# short: only things that legitimately differ between compatible servers.
#
# The 403 message texts are server- and version-specific; clients key on the
# 403 status (hvac: Forbidden), which is still compared exactly:
#   - invalid or missing token: OpenBao 2.x answers ["permission denied"],
#     Vault >= 1.17 answers with "permission denied" and "invalid token"
#     (hashicorp/vault#26687);
#   - valid token denied by policy: OpenBao/Vault answer the Go multierror
#     text ["1 error occurred:\n\t* permission denied\n\n"], whose layout
#     changed across Vault versions ("1 error(s) occurred:\n\n* ..." in 0.x).
# We only require that some error string mentions "permission denied".
PD = (_mentions_permission_denied, '403 text is server-specific; must mention "permission denied"')
# The sequence runs as OpenBao's dev root token, which never expires and so is
# not renewable; coffer has no token without an expiry (every token is made
# with a ttl and can be renewed), so `renewable` of the caller's own token
# differs by design. Any boolean is accepted there.
RENEWABLE = (lambda v: isinstance(v, bool), "coffer has no non-expiring root token; any boolean")
IGNORE = {
    "token_lookup_self": {"result.renewable": RENEWABLE},
    "bad_token_read": {"result.errors": PD},
    "no_token_read": {"result.errors": PD},
    "child_token_read_denied_by_policy": {"result.errors": PD},
}

MISSING = object()


def fmt(v):
    if v is MISSING:
        return "<absent>"
    return json.dumps(v, sort_keys=True)


def diff(path, a, b, out, ignored):
    """Append (path, expected, actual) for each differing leaf."""
    if path in ignored:
        check, reason = ignored[path]
        if check is not None and not check(None if b is MISSING else b):
            out.append((path + f"  (relaxed check: {reason})", a, b))
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            diff(f"{path}.{k}" if path else str(k), a.get(k, MISSING), b.get(k, MISSING), out, ignored)
        return
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(
        isinstance(x, (dict, list)) for x in a + b
    ):
        for i, (x, y) in enumerate(zip(a, b)):
            diff(f"{path}[{i}]", x, y, out, ignored)
        return
    # Lists of scalars (key lists, error lists) are compared whole, so the
    # message shows both complete values.
    if a != b or type(a) is not type(b):
        out.append((path, a, b))


def load(p):
    try:
        with open(p) as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"compare: cannot read {p}: {exc}", file=sys.stderr)
        sys.exit(2)
    if not isinstance(data, list) or not all(isinstance(s, dict) and "step" in s for s in data):
        print(f"compare: {p} is not a kv_sequence.py step list", file=sys.stderr)
        sys.exit(2)
    return data


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    expected, actual = load(sys.argv[1]), load(sys.argv[2])
    exp_names = [s["step"] for s in expected]
    act_names = [s["step"] for s in actual]
    act_by_name = {s["step"]: s for s in actual}
    exp_set = set(exp_names)

    n_diff = 0
    n_ignored = 0
    for name in exp_names:
        if name not in act_by_name:
            print(f"[{name}] step missing from actual")
            n_diff += 1
    for name in act_names:
        if name not in exp_set:
            print(f"[{name}] unexpected extra step in actual")
            n_diff += 1
    common_exp = [n for n in exp_names if n in act_by_name]
    common_act = [n for n in act_names if n in exp_set]
    if common_exp != common_act:
        print("step order differs:\n  expected: " + ", ".join(common_exp) + "\n  actual:   " + ", ".join(common_act))
        n_diff += 1

    for exp in expected:
        name = exp["step"]
        act = act_by_name.get(name)
        if act is None:
            continue
        ignored = IGNORE.get(name, {})
        n_ignored += len(ignored)
        out = []
        diff("", exp, act, out, ignored)
        if not out:
            continue
        print(f"[{name}] expected ok={exp.get('ok')} status={exp.get('status')}, "
              f"actual ok={act.get('ok')} status={act.get('status')}")
        for path, a, b in out:
            print(f"    {path}: expected {fmt(a)}")
            print(f"    {' ' * len(path)}  actual   {fmt(b)}")
        n_diff += len(out)

    total = len(expected)
    if n_diff:
        print(f"\n{n_diff} difference(s) over {total} expected steps")
        return 1
    note = f" ({n_ignored} path(s) checked loosely, see IGNORE in compare.py)" if n_ignored else ""
    print(f"all {total} steps match{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
