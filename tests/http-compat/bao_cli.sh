#!/usr/bin/env bash
# Drive the real OpenBao CLI (`bao kv ...`) against a Vault-compatible server
# and check that each operation really happened.
#
# Usage: BAO_ADDR=http://127.0.0.1:18200 BAO_TOKEN=root [BAO_CACERT=ca.pem] ./bao_cli.sh
#
# Uses secret/cli/demo (its metadata is deleted first and at the end, so the
# key always starts at version 1). Needs `bao` on PATH and python3 (JSON checks).
#
# Note on OpenBao's CLI semantics: `bao kv get` of a soft-deleted or destroyed
# version exits 0 and prints only the metadata (the server answers 404 with a
# body that has data=null and the version metadata). `bao kv get -field=a`
# exits 2 ("No data found at ..."), so that is what "get fails" means below.
set -euo pipefail

: "${BAO_ADDR:?set BAO_ADDR}"
: "${BAO_TOKEN:?set BAO_TOKEN}"
export BAO_ADDR BAO_TOKEN
if [ -n "${BAO_CACERT:-}" ]; then export BAO_CACERT; fi

MOUNT=secret
KEY=cli/demo
OUT=""

fail() { echo "bao cli: FAIL: $*" >&2; [ -n "$OUT" ] && printf '%s\n' "--- output ---" "$OUT" >&2; exit 1; }

# run CMD...: must succeed; output kept in $OUT
run() {
    echo "+ $*"
    if ! OUT=$("$@" 2>&1); then fail "command failed: $*"; fi
}

# run_fails CMD...: must exit non-zero
run_fails() {
    echo "+ $* (expected to fail)"
    if OUT=$("$@" 2>&1); then fail "command unexpectedly succeeded: $*"; fi
}

# expect REGEX: $OUT must contain a line matching the extended regex
expect() { grep -Eq -- "$1" <<<"$OUT" || fail "output does not match /$1/"; }

# json_check PYEXPR: evaluate a Python expression over j = json.loads($OUT)
json_check() {
    python3 -c 'import json,sys; j=json.loads(sys.stdin.read()); sys.exit(0 if eval(sys.argv[1]) else 1)' "$1" <<<"$OUT" \
        || fail "JSON check failed: $1"
}

# Start from a clean key so version numbers are deterministic.
run bao kv metadata delete -mount=$MOUNT $KEY

# put -> version 1
run bao kv put -mount=$MOUNT $KEY a=1 b=2
expect '^version +1$'
expect '^destroyed +false$'

# get (table)
run bao kv get -mount=$MOUNT $KEY
expect '^a +1$'
expect '^b +2$'
expect '^version +1$'

# get -format=json
run bao kv get -format=json -mount=$MOUNT $KEY
expect '"a": "1"'
expect '"b": "2"'
json_check 'j["data"]["data"] == {"a": "1", "b": "2"} and j["data"]["metadata"]["version"] == 1'

# list the folder
run bao kv list -mount=$MOUNT cli
expect '^demo$'
run bao kv list -format=json -mount=$MOUNT cli
json_check '"demo" in j'

# metadata get
run bao kv metadata get -mount=$MOUNT $KEY
expect '^current_version +1$'
expect '^=+ Version 1 =+$'

# delete (soft, latest version) -> data gone, metadata shows deletion_time
run bao kv delete -mount=$MOUNT $KEY
expect 'Success! Data deleted'
run_fails bao kv get -field=a -mount=$MOUNT $KEY
run bao kv get -format=json -mount=$MOUNT $KEY
json_check 'j["data"]["data"] is None and j["data"]["metadata"]["deletion_time"] != "" and j["data"]["metadata"]["destroyed"] is False'

# undelete version 1 -> readable again
run bao kv undelete -mount=$MOUNT -versions=1 $KEY
expect 'Success!'
run bao kv get -field=a -mount=$MOUNT $KEY
expect '^1$'
run bao kv get -format=json -mount=$MOUNT $KEY
json_check 'j["data"]["data"] == {"a": "1", "b": "2"} and j["data"]["metadata"]["deletion_time"] == ""'

# destroy version 1 -> gone for good
run bao kv destroy -mount=$MOUNT -versions=1 $KEY
expect 'Success!'
run_fails bao kv get -field=a -mount=$MOUNT $KEY
run bao kv get -format=json -mount=$MOUNT $KEY
json_check 'j["data"]["data"] is None and j["data"]["metadata"]["destroyed"] is True'
run bao kv metadata get -format=json -mount=$MOUNT $KEY
json_check 'j["data"]["versions"]["1"]["destroyed"] is True'

# missing key: get fails
run bao kv metadata delete -mount=$MOUNT $KEY
run_fails bao kv get -mount=$MOUNT $KEY
expect 'No value found at'

echo "bao cli: all steps passed"
