#!/usr/bin/env bash
# test_config_file.sh - baton-coord and baton-worker read --config FILE (base/cliconf.h):
# broken files (unknown key, bad number, bad boolean, key outside a section,
# unknown section, syntax error, over-long line, missing file) are refused with a
# message naming the file, the line and the key; a good file's values reach the
# option checks (a flag on the command line overrides the file), and the
# [coordinator] keys are skipped by the worker. No cluster needed.
set -u
BIN=${BATON_BUILD:?set BATON_BUILD to the build folder}
fail=0
n=0
W=$(mktemp -d /tmp/baton-conf.XXXXXX)
trap 'rm -rf "$W"' EXIT
bad() { echo "  FAIL $*"; fail=1; }

# expect STATUS 'TEXT' PROGRAM ARGS...: exit STATUS and stderr contains TEXT
expect() {
    local want=$1 text=$2 err rc
    shift 2
    err=$(timeout 20 "$BIN/$@" 2>&1 >/dev/null)
    rc=$?
    n=$((n + 1))
    [ "$rc" = "$want" ] || { bad "$*: exit $rc, want $want ($err)"; return; }
    case $err in *"$text"*) ;; *) bad "$*: stderr lacks '$text': $err" ;; esac
}
conf() { printf "$2" > "$W/$1"; }
C=coordinator/baton-coord
WK=worker/baton-worker

conf unknown.ini '# a pool\n[common]\ncluster-id = pool\n\n[coordinator]\nlisten = 127.0.0.1:0\nwrokers = 3\n'
expect 2 "$W/unknown.ini:7: unknown key 'wrokers' in [coordinator]" $C --config "$W/unknown.ini" --model x
conf badnum.ini '[coordinator]\nlisten = 127.0.0.1:0\nslots = 12x\n'
expect 2 "$W/badnum.ini:3: key 'slots': --slots: expected an integer in [1, 4096], got '12x'" $C --config "$W/badnum.ini" --model x
conf badsize.ini '[common]\nmax-frame = 1.5Q\n'
expect 2 "$W/badsize.ini:2: key 'max-frame': --max-frame: expected a size in bytes" $C --config="$W/badsize.ini"
expect 1 "$W/badsize.ini:2: key 'max-frame': --max-frame: expected a size in bytes" $WK --config="$W/badsize.ini"
conf wthreads.ini '[worker]\n; comment\nthreads = -1\n'
expect 1 "$W/wthreads.ini:3: key 'threads': --threads: expected an integer in [1, 4096], got '-1'" $WK --config "$W/wthreads.ini"
conf badbool.ini '[worker]\nmpi = perhaps\n'
expect 1 "$W/badbool.ini:2: key 'mpi': expected true or false, got 'perhaps'" $WK --config "$W/badbool.ini"
conf nosect.ini 'threads = 2\n'
expect 1 "$W/nosect.ini:1: key 'threads' outside a section" $WK --config "$W/nosect.ini"
conf badsect.ini '[wroker]\nthreads = 2\n'
expect 1 "$W/badsect.ini:2: unknown section [wroker]" $WK --config "$W/badsect.ini"
conf syntax.ini '[worker]\nthreads = 2\njust words\n'
expect 1 "$W/syntax.ini:3: syntax error" $WK --config "$W/syntax.ini"
conf help.ini '[coordinator]\nhelp = true\n'
expect 2 "$W/help.ini:2: key 'help' is not allowed in a config file" $C --config "$W/help.ini"
printf '[worker]\nmodel = %0300d\n' 0 > "$W/long.ini"
expect 1 "$W/long.ini:2: line too long" $WK --config "$W/long.ini"
expect 2 "--config: cannot read $W/missing.ini: No such file or directory" $C --config "$W/missing.ini"
expect 1 "--config: cannot read $W/missing.ini: No such file or directory" $WK --config "$W/missing.ini"
# the bad key of the worker's section does not concern the coordinator, and the reverse
conf split.ini '[coordinator]\nslots = 0\n[worker]\nthreads = 0\n'
expect 2 "$W/split.ini:2: key 'slots'" $C --config "$W/split.ini" --listen 127.0.0.1:0 --model x
expect 1 "$W/split.ini:4: key 'threads'" $WK --config "$W/split.ini" --coordinator 127.0.0.1:1 --model x
# a good file gets past the parser: the model file is what fails (the values were taken)
conf good.ini '[common]\ncluster-id = pool\nmax-frame = 64M\n[coordinator]\nlisten = 127.0.0.1:0\nmodel = /nonexistent/m.gguf\nslots = 4\n[worker]\ncoordinator = 127.0.0.1:1\nmodel = /nonexistent/m.gguf\nthreads = 1\nmpi = false\n'
expect 1 "/nonexistent/m.gguf" $C --config "$W/good.ini"
expect 1 "/nonexistent/m.gguf" $WK --config "$W/good.ini"
# the command line overrides the file: a flag's bad value is reported as the flag's, a good one replaces the file's
expect 2 "baton-coord: --slots: expected an integer in [1, 4096], got '0'" $C --config "$W/good.ini" --slots 0
expect 1 "/elsewhere.gguf" $C --config "$W/good.ini" --model /elsewhere.gguf
expect 1 "/elsewhere.gguf" $WK --model /elsewhere.gguf --config "$W/good.ini"
# and a flag overrides a bad value of the file only by coming after it: the file's error stands
expect 2 "$W/badnum.ini:3: key 'slots'" $C --config "$W/badnum.ini" --slots 4 --model x

[ $fail = 0 ] && echo "test_config_file: all $n checks passed" || echo "test_config_file: FAILED"
exit $fail
