#!/usr/bin/env bash
# test_gguf_cli.sh - malformed model files, end to end through the binaries.
#
# Makes a tiny model with baton-mkmodel, then feeds baton-run copies of it that are
# truncated at ~150 positions (spread over the metadata, the tensor table and the
# tensor data) and copies with ~24 header fields corrupted. Every run must:
#   - exit non-zero, and not by a signal (exit code < 128);
#   - print exactly one line on stderr, starting "baton-run:";
#   - print nothing from a sanitizer ("Sanitizer", "runtime error").
# The layout of the file is found by an independent GGUF parser written here in
# Python (not the C reader under test). Missing binaries are a failure, not a skip.
set -u

BUILD=${BATON_BUILD:?BATON_BUILD must name the build folder}
MKMODEL=$BUILD/tools/baton-mkmodel
RUN=$BUILD/tools/baton-run
PY=/usr/bin/python3
for b in "$MKMODEL" "$RUN"; do
    if [ ! -x "$b" ]; then
        echo "FAIL: $b does not exist (build it first)"
        exit 1
    fi
done

TMP=$(mktemp -d /tmp/test_gguf_cli.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
MODEL=$TMP/tiny.gguf
if ! "$MKMODEL" --preset tiny -o "$MODEL" >"$TMP/mk.out" 2>&1; then
    echo "FAIL: baton-mkmodel --preset tiny failed:"
    cat "$TMP/mk.out"
    exit 1
fi

# The unmodified model must run, or the failures below would prove nothing.
if ! "$RUN" --model "$MODEL" --tokens 1,2 --max-tokens 2 >"$TMP/ok.out" 2>"$TMP/ok.err"; then
    echo "FAIL: baton-run on the valid tiny model failed:"
    cat "$TMP/ok.err"
    exit 1
fi

"$PY" - "$MODEL" "$RUN" "$TMP" <<'EOF'
import concurrent.futures, os, struct, subprocess, sys

path, run, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(path, 'rb').read()
pos = 0

def take(fmt):
    global pos
    v = struct.unpack_from('<' + fmt, data, pos)
    pos += struct.calcsize('<' + fmt)
    return v[0]

SIZES = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: 'B', 10: 'Q', 11: 'q', 12: 'd'}

def skip_value(t):
    global pos
    if t == 8:
        n = take('Q'); pos += n
    elif t == 9:
        et = take('I'); n = take('Q')
        for _ in range(n):
            skip_value(et)
    else:
        take(SIZES[t])

assert data[:4] == b'GGUF'
pos = 4
version = take('I'); n_tensors = take('Q'); n_kv = take('Q')
kv = {}  # key -> dict(key_off, type_off, val_off, type, ...)
for i in range(n_kv):
    key_off = pos
    n = take('Q'); key = data[pos:pos + n].decode(); pos += n
    type_off = pos
    t = take('I')
    e = dict(index=i, key_off=key_off, type_off=type_off, val_off=pos, type=t)
    if t == 9:
        e['etype'] = struct.unpack_from('<I', data, pos)[0]
        e['count_off'] = pos + 4
        e['first_elem_off'] = pos + 12
    skip_value(t)
    kv[key] = e
table_start = pos
tensors = []
for i in range(n_tensors):
    name_off = pos
    n = take('Q'); name = data[pos:pos + n].decode(); pos += n
    ndims_off = pos
    nd = take('I')
    dim_offs = []
    dims = []
    for d in range(nd):
        dim_offs.append(pos); dims.append(take('Q'))
    type_off = pos; typ = take('I')
    off_off = pos; off = take('Q')
    tensors.append(dict(name=name, name_off=name_off, ndims_off=ndims_off, dim_offs=dim_offs, dims=dims,
                        type=typ, type_off=type_off, off_off=off_off, offset=off))
align = 32
if 'general.alignment' in kv:
    align = struct.unpack_from('<I', data, kv['general.alignment']['val_off'])[0]
table_end = pos
data_start = (table_end + align - 1) // align * align
# Where the tensor data ends (GGML type id -> elements, bytes per block); cutting
# anywhere before it must fail, cutting in the final padding need not.
BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 8: (32, 34), 12: (256, 144), 14: (256, 210), 30: (1, 2)}
def nbytes(t):
    n = 1
    for d in t['dims']: n *= d
    be, bb = BLOCKS[t['type']]
    return n // be * bb
data_end = max(data_start + t['offset'] + nbytes(t) for t in tensors)
assert data_end <= len(data)

def u32(v): return struct.pack('<I', v).hex()
def u64(v): return struct.pack('<Q', v).hex()
cases = []
def case(name, patches, length=-1):
    cases.append((name, patches, length))

# Truncations: 50 in the metadata, 50 in the tensor table, 50 in the tensor data.
def spread(a, b, n):
    if b <= a: return []
    return sorted(set(a + (b - a) * k // n for k in range(n)))
for L in spread(0, table_start, 50) + spread(table_start, data_start, 50) + spread(data_start, data_end, 50):
    case('truncated at %d' % L, [], L)

t0, t1, tl = tensors[0], tensors[1], tensors[-1]
arch = kv['general.architecture']
case('magic', [(0, b'GGUX'.hex())])
case('version 1', [(4, u32(1))])
case('version 4', [(4, u32(4))])
case('big-endian version', [(4, u32(0x03000000))])
case('tensor count 2^60', [(8, u64(1 << 60))])
case('kv count 2^60', [(16, u64(1 << 60))])
case('key 0 length', [(kv[next(iter(kv))]['key_off'], u64(1 << 40))])
case('key 0 NUL byte', [(kv[next(iter(kv))]['key_off'] + 9, '00')])
case('key 0 value type', [(kv[next(iter(kv))]['type_off'], u32(99))])
case('architecture string length', [(arch['val_off'], u64(1 << 40))])
case('architecture qwen3', [(arch['val_off'] + 8, b'qwen3'.hex())])
case('block_count 0', [(kv['qwen2.block_count']['val_off'], u32(0) if kv['qwen2.block_count']['type'] == 4 else u64(0))])
toks = kv['tokenizer.ggml.tokens']
case('tokens element type', [(toks['val_off'], u32(99))])
case('tokens count', [(toks['count_off'], u64(1 << 40))])
case('token 0 length', [(toks['first_elem_off'], u64(1 << 40))])
case('tensor 0 name length', [(t0['name_off'], u64(1 << 40))])
case('tensor 0 n_dims 7', [(t0['ndims_off'], u32(7))])
case('tensor 0 dimension 0 is 0', [(t0['dim_offs'][0], u64(0))])
case('tensor 0 huge dimension', [(t0['dim_offs'][-1], u64(1 << 40))])
case('tensor 0 type 99', [(t0['type_off'], u32(99))])
case('tensor 1 offset misaligned', [(t1['off_off'], u64(t1['offset'] + 1))])
case('tensor 1 overlaps tensor 0', [(t1['off_off'], u64(t0['offset']))])
case('last tensor outside', [(tl['off_off'], u64(1 << 40))])
case('tensor 0 renamed', [(t0['name_off'] + 8, b'X'.hex())])
if 'general.alignment' in kv:
    case('alignment 48', [(kv['general.alignment']['val_off'], u32(48))])

# Run every case (two at a time; the rest of the budget is process start-up, which
# is slow under ASan) and judge exit status and stderr.
def run_case(k):
    name, patches, length = cases[k]
    img = bytearray(data[:length] if length >= 0 else data)
    for off, hexbytes in patches:
        b = bytes.fromhex(hexbytes)
        img[off:off + len(b)] = b
    case_path = os.path.join(tmp, 'case%d.gguf' % k)
    with open(case_path, 'wb') as f:
        f.write(img)
    # In a sanitizer build, LeakSanitizer's exit scan doubles the cost of a run: keep
    # it for the corrupted fields and every fifth cut (test_gguf covers the reader's
    # own error paths for leaks exhaustively).
    env = dict(os.environ)
    if length >= 0 and k % 5:
        env['ASAN_OPTIONS'] = (env.get('ASAN_OPTIONS', '') + ':detect_leaks=0').lstrip(':')
    r = subprocess.run([run, '--model', case_path, '--tokens', '1,2', '--max-tokens', '2'],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120, env=env)
    os.unlink(case_path)
    return r.returncode, r.stderr.decode('utf-8', 'replace')

bad = 0
shown = 0
with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    results = list(pool.map(run_case, range(len(cases))))
for (name, patches, length), (rc, err) in zip(cases, results):
    lines = err.splitlines()
    why = []
    if rc == 0: why.append('exit 0')
    if rc < 0 or rc >= 128: why.append('killed by a signal (exit %d)' % rc)
    if len(lines) != 1 or not err.endswith('\n'): why.append('%d lines on stderr' % len(lines))
    if not lines or not lines[0].startswith('baton-run:'): why.append("stderr does not start with 'baton-run:'")
    if 'Sanitizer' in err or 'runtime error' in err: why.append('sanitizer report')
    if why:
        bad += 1
        print('FAIL: %s: %s' % (name, '; '.join(why)))
        for l in lines[:20]: print('    | ' + l)
    elif length < 0 or shown < 3:
        shown += 1
        print('ok: %s: %s' % (name, lines[0]))
print('%d malformed files run (%d truncated, %d corrupted), %d failed'
      % (len(cases), sum(1 for c in cases if c[2] >= 0), sum(1 for c in cases if c[2] < 0), bad))
if len(cases) < 150:
    print('FAIL: only %d cases' % len(cases))
    sys.exit(1)
sys.exit(1 if bad else 0)
EOF
