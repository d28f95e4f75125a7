#!/usr/bin/env python3
"""gen_seeds.py - writes the seed corpora of the fuzz targets (tests/fuzz/NAME/).

  gen_seeds.py BUILD_DIR   (the fuzz build: build/fuzz, with fuzz_coord and fuzz-tiny.gguf)

The frames are encoded from the wire format (tests/rawpeer.py's encoders) the
way the daemons and the client library send them: requests of every kind a
client, an admin and a worker send the coordinator; assignments, stage frames
and heartbeats a coordinator sends a worker; a coordinator's answers as the
client library reads them. Files come from baton-mkmodel (small GGUF models)
and a small hand-made tokenizer.json. Seeds are named by what they hold; the
regression inputs of crashes found (crash-*) are kept next to them.
"""
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from rawpeer import MAGIC, field_bytes, field_float, field_varint  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
K = dict(HELLO=1, CALL_STATUS=2, CANCEL=3, GENERATE=10, GENERATE_CHUNK=11, TOKENIZE=12, TOKENIZE_REPLY=13,
         MODEL_INFO=14, MODEL_INFO_REPLY=15, HEALTH=16, HEALTH_REPLY=17, JOIN=30, ASSIGNMENT=31, READY=32,
         HEARTBEAT=33, DROP=34, STAGE=40, STAGE_RESULT=41, WORKER_STATUS=42, LINK_LOST=43, ADMIN_STATE=50,
         ADMIN_STATE_REPLY=51, ADMIN_NODE_OP=52, ADMIN_NODE_OP_REPLY=53, METRICS=54, METRICS_REPLY=55,
         AUTH_PROOF=60, AUTH_OK=61)


def frame(kind, msg=b"", payload=b"", call=0):
    return struct.pack("<IHHIII", MAGIC, K[kind], 0, call, len(msg), len(payload)) + msg + payload


def s(n, text):
    return field_bytes(n, text.encode() if isinstance(text, str) else text)


def packed(n, vals):
    from rawpeer import varint
    return field_bytes(n, b"".join(varint(v) for v in vals))


def sampling(temp=0.0, top_k=0, top_p=0.0, seed=0):
    return field_float(1, temp) + field_varint(2, top_k) + field_float(3, top_p) + field_varint(9, seed)


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def client_requests():
    gen_text = s(2, "Hello there") + field_bytes(4, sampling()) + field_varint(5, 4)
    gen_tok = packed(1, [1, 2, 3, 4]) + field_bytes(4, sampling(0.8, 40, 0.9, 7)) + field_varint(5, 3)
    chat = field_bytes(3, s(1, "system") + s(2, "be brief")) + field_bytes(3, s(1, "user") + s(2, "hi"))
    gen_chat = chat + field_varint(5, 2) + s(6, "\n") + field_varint(7, 50)
    out = {
        "gen_text": frame("GENERATE", gen_text, call=1),
        "gen_tokens": frame("GENERATE", gen_tok, call=2),
        "gen_chat_deadline": frame("GENERATE", gen_chat, call=3),
        "gen_cancel": frame("GENERATE", gen_text, call=4) + frame("CANCEL", call=4),
        "gen_two": frame("GENERATE", gen_text, call=5) + frame("GENERATE", gen_tok, call=6) + frame("CANCEL", call=5),
        "tokenize": frame("TOKENIZE", s(1, "<|im_start|>hi") + field_varint(2, 1), call=7),
        "detokenize": frame("TOKENIZE", packed(3, [1, 2, 300]), call=8),
        "model_health": frame("MODEL_INFO", call=9) + frame("HEALTH", call=10),
        "unknown_kind": frame("STAGE", b"", call=11) + frame("HEALTH", call=12),
    }
    return out


def admin_requests():
    return {
        "state": frame("ADMIN_STATE", call=1),
        "metrics": frame("METRICS", call=2),
        "drain": frame("ADMIN_NODE_OP", field_varint(1, 1) + field_varint(2, 1), call=3),
        "rebalance_state": frame("ADMIN_NODE_OP", field_varint(1, 4), call=4) + frame("ADMIN_STATE", call=5),
        "gen_as_admin": frame("GENERATE", s(2, "x"), call=6),
        # two shutdowns: the second once re-initialised the first's running timer (found by fuzz_coord)
        "shutdown_twice": frame("ADMIN_NODE_OP", field_varint(1, 5), call=7) +
        frame("ADMIN_NODE_OP", field_varint(1, 5), call=8),
    }


def worker_frames(digest):
    join = s(1, "127.0.0.1:1") + field_varint(2, 1 << 30) + field_varint(3, 2) + s(4, "avx2") + \
        bytes([0x29]) + struct.pack("<d", 0.001) + s(6, digest) + field_varint(7, 1)
    ready = field_varint(1, 1) + field_varint(2, 1) + field_varint(4, 1000) + field_varint(5, 1000)
    status = field_varint(1, 1) + field_varint(2, 10) + field_varint(3, 1 << 20)
    tok = field_bytes(2, field_varint(1, 0) + field_varint(2, 5) + field_float(3, -1.0))
    result = field_varint(1, 1) + tok
    return {
        "join": frame("JOIN", join),
        "join_ready": frame("JOIN", join) + frame("READY", ready),
        "join_ready_status_result": frame("JOIN", join) + frame("READY", ready) + frame("WORKER_STATUS", status) +
        frame("STAGE_RESULT", result) + frame("HEARTBEAT", field_varint(1, 5)),
        "join_linklost": frame("JOIN", join) + frame("READY", ready) + frame("LINK_LOST", field_varint(1, 1)),
    }


def coordinator_to_worker(n_layer, width):
    asg = (field_varint(1, 1) + field_varint(2, 0) + field_varint(3, n_layer) + field_varint(4, 1) +
           field_varint(5, 1) + field_varint(7, 4) + field_varint(8, 128) + field_varint(9, 32) +
           field_varint(10, 1) + s(12, bytes(range(32))))
    asg_mid = (field_varint(1, 1) + field_varint(2, 1) + field_varint(3, n_layer) + field_varint(5, 1) +
               field_varint(7, 4) + field_varint(8, 128) + field_varint(9, 32) + field_varint(10, 2))
    spec = field_bytes(10, field_varint(1, 2) + field_bytes(2, sampling()) + field_varint(3, 0))
    stage = (field_varint(1, 1) + packed(2, [0, 0, 0]) + packed(3, [0, 1, 2]) + packed(4, [1, 2, 3]) +
             field_varint(5, 3) + field_varint(6, width) + spec + packed(11, [0]))
    hidden = struct.pack("<%df" % (2 * width), *[((i * 37) % 17 - 8) / 8.0 for i in range(2 * width)])
    stage_hidden = (field_varint(1, 2) + packed(2, [1, 1]) + packed(3, [0, 1]) + packed(4, [5, 6]) +
                    field_varint(5, 2) + field_varint(6, width) + field_varint(7, 0) +
                    field_varint(8, len(hidden)) + spec.replace(bytes([0x08, 0x02]), bytes([0x08, 0x01]), 1))
    return {
        "assign_all": frame("ASSIGNMENT", asg),
        "assign_stage": frame("ASSIGNMENT", asg) + frame("STAGE", stage) + frame("HEARTBEAT", field_varint(2, 1)),
        "assign_stage_drop": frame("ASSIGNMENT", asg) + frame("STAGE", stage) + frame("DROP", packed(1, [0])),
        "assign_mid_hidden": frame("ASSIGNMENT", asg_mid) + frame("STAGE", stage_hidden, hidden),
        "refused": frame("CALL_STATUS", field_varint(1, 9) + s(2, "another model")),
    }, frame("STAGE", stage_hidden, hidden)


def coordinator_to_client():
    hello = field_varint(1, 1) + field_varint(2, 3) + s(3, "fuzz") + s(4, "coordinator") + field_varint(5, 1) + \
        s(8, bytes(32))
    pre = frame("HELLO", hello) + frame("AUTH_OK")
    chunk = packed(1, [5, 6]) + field_bytes(2, struct.pack("<2f", -0.5, -1.5)) + s(3, "ab")
    last = packed(1, [7]) + field_bytes(2, struct.pack("<f", -0.1)) + s(3, "c") + field_varint(4, 1) + \
        field_varint(5, 3) + s(8, "length")
    ok = frame("CALL_STATUS", field_varint(1, 0), call=1)
    node = field_varint(1, 1) + s(2, "127.0.0.1:7001") + field_varint(3, 0) + field_varint(4, 2) + s(16, "serving")
    health = field_varint(1, 1) + field_varint(2, 1) + field_bytes(5, node) + s(6, "") + field_varint(7, 1)
    return {
        "0_gen": bytes([0]) + pre + frame("GENERATE_CHUNK", chunk, call=1) + frame("GENERATE_CHUNK", last, call=1) + ok,
        "1_gen_tokens_error": bytes([1]) + pre + frame("GENERATE_CHUNK", chunk, call=1) +
        frame("CALL_STATUS", field_varint(1, 11) + s(2, "too long"), call=1),
        "2_gen_chat_cancel": bytes([2 | 8]) + pre + frame("GENERATE_CHUNK", chunk, call=1) +
        frame("GENERATE_CHUNK", chunk, call=1) + frame("CALL_STATUS", field_varint(1, 1), call=1),
        "3_tokenize": bytes([3]) + pre + frame("TOKENIZE_REPLY", packed(1, [1, 2]) + s(2, "hi"), call=1) + ok,
        "4_detokenize": bytes([4]) + pre + frame("TOKENIZE_REPLY", s(2, "hello"), call=1) + ok,
        "5_health": bytes([5]) + pre + frame("HEALTH_REPLY", health, call=1),
        "6_admin_state": bytes([0x80 | 6]) + pre + frame("ADMIN_STATE_REPLY", health, call=1),
        "7_node_op": bytes([0x80 | 7]) + pre + frame("ADMIN_NODE_OP_REPLY", s(1, "drained"), call=1),
        "8_metrics": bytes([0x80 | 8]) + pre + frame("METRICS_REPLY", s(1, "baton_up 1\n"), call=1),
        "9_model": bytes([9]) + pre + frame("MODEL_INFO_REPLY", field_varint(1, 2) + field_varint(2, 256) +
                                            field_varint(3, 512) + field_varint(4, 4096) + field_varint(5, 1), call=1),
        "refused": bytes([0]) + frame("CALL_STATUS", field_varint(1, 16) + s(2, "no key")),
    }


TOKENIZER_JSON = r'''{
  "version": "1.0",
  "added_tokens": [
    {"id": 12, "content": "<|endoftext|>", "special": true},
    {"id": 13, "content": "<|im_start|>", "special": true},
    {"id": 14, "content": "<|im_end|>", "special": true}
  ],
  "normalizer": {"type": "NFC"},
  "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]},
  "decoder": {"type": "ByteLevel"},
  "model": {"type": "BPE", "byte_fallback": false,
    "vocab": {"h": 0, "e": 1, "l": 2, "o": 3, "\u0120": 4, "w": 5, "r": 6, "d": 7, "he": 8, "ll": 9, "hell": 10, "hello": 11},
    "merges": ["h e", "l l", "he ll", "hell o"]}
}
'''


API_BODIES = {
    "chat_min": '{"messages":[{"role":"user","content":"Hello"}]}',
    "chat_full": '{"model":"fuzz-tiny","messages":[{"role":"system","content":"Be brief."},'
                 '{"role":"user","content":[{"type":"text","text":"Hi "},{"type":"text","text":"there"}]},'
                 '{"role":"assistant","content":null},{"role":"developer","content":"x"}],'
                 '"stream":true,"stream_options":{"include_usage":true},"stop":["\\n\\n","END"],'
                 '"temperature":0.7,"top_p":0.9,"top_k":40,"min_p":0.05,"presence_penalty":0.5,'
                 '"frequency_penalty":-0.5,"repetition_penalty":1.1,"seed":42,"max_tokens":16,'
                 '"max_completion_tokens":8,"n":1,"ignore_eos":false,"reasoning_format":"inline"}',
    "completion_text": '{"prompt":"Once upon a time","max_tokens":5,"stop":"\\n","temperature":0}',
    "completion_one": '{"prompt":["caf\\u00e9 \\ud83d\\ude00"],"stream":false,"seed":-1}',
    "completion_ids": '{"prompt":[1,2,3,2147483647],"reasoning_format":"none","top_k":0}',
    "bad_json": '{"messages":[{"role":"user","content":"Hello"}',
    "bad_not_object": '[1,2,3]',
    "bad_role": '{"messages":[{"role":"tool","content":"x"}]}',
    "bad_model": '{"model":"other","prompt":"x"}',
    "bad_range": '{"prompt":"x","temperature":3,"top_p":-1}',
    "bad_types": '{"prompt":"x","stream":"yes","max_tokens":1.5}',
    "bad_stops": '{"prompt":"x","stop":["a","b","c","d","e"]}',
    "bad_n": '{"messages":[{"role":"user","content":"x"}],"n":2}',
    "bad_prompt_ids": '{"prompt":[1,-2,4294967296]}',
    "bad_parts": '{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}',
}


CONFIGS = {
    "both": "; a cluster's file\n[common]\ncluster-id = lab\nsecret = /etc/baton/secret\nmax-frame = 64M\n\n"
            "[coordinator]\nlisten = 0.0.0.0:7000\nmodel = /models/qwq.gguf\nworkers = 3\nslots = 16\n"
            "mpi = false\nhttp-listen = 127.0.0.1:8080\n\n[worker]\ncoordinator = 10.0.0.1:7000\n"
            "threads = 8\nmeasure = yes\ncodec = q8\n",
    "worker_only": "[worker]\nlisten=:7100\nkv = 4G\nmpi = on\n",
    "empty_value": "[common]\nsecret =\n",
    "bad_section": "[gpu]\nthreads = 4\n",
    "bad_key": "[coordinator]\nlistne = 1\n",
    "bad_outside": "listen = 0.0.0.0:7000\n",
    "bad_help": "[common]\nhelp = true\n",
    "bad_bool": "[worker]\nmpi = maybe\n",
    "bad_syntax": "[common\ncluster-id lab\n",
    "bad_long": "[common]\ncluster-id = " + "x" * 250 + "\n",
}


def main():
    build = sys.argv[1]
    mk = os.path.join(build, "tools", "baton-mkmodel")
    micro = os.path.join(build, "fuzz-seed-micro.gguf")
    subprocess.check_call([mk, "--preset", "tiny", "--layers", "1", "--embd", "32", "--heads", "2", "--kv-heads", "1",
                           "--ff", "64", "--type", "f32", "-o", micro], stdout=subprocess.DEVNULL)
    digest = subprocess.run([os.path.join(build, "tests", "fuzz", "fuzz_coord")], env=dict(os.environ, BATON_FUZZ_DIGEST="1"),
                            capture_output=True, text=True, check=True).stdout.strip()
    for name, data in client_requests().items():
        write("coord", "client_" + name, bytes([0, 0, 0]) + data)
        write("frame", "client_" + name, bytes([0x13]) + data)
    for name, data in admin_requests().items():
        write("coord", "admin_" + name, bytes([1, 0, 0]) + data)
    wf = worker_frames(digest)
    for name, data in wf.items():
        write("coord", "worker_" + name, bytes([2, 0, 0]) + data)
        write("frame", "worker_" + name, bytes([0x7f]) + data)
    wjr = wf["join_ready"]
    g = client_requests()["gen_tokens"]
    write("coord", "worker_then_client", bytes([3, len(wjr) & 255, len(wjr) >> 8]) + wjr + g)
    cw, pred = coordinator_to_worker(2, 256)
    for name, data in cw.items():
        write("worker", "coord_" + name, bytes([0, 0, 0]) + data)
        write("frame", "coord_" + name, bytes([0x81]) + data)
    a = cw["assign_all"]
    write("worker", "coord_then_pred", bytes([1, len(a) & 255, len(a) >> 8]) + a + pred)
    write("worker", "pred_only", bytes([2, 0, 0]) + pred)
    for name, data in coordinator_to_client().items():
        write("client", name, data)
    with open(micro, "rb") as f:
        write("gguf", "micro_f32", f.read())
    write("tokenizer_json", "small", TOKENIZER_JSON.encode())
    texts = ["Hello world", "hello hello, 12345!", "caf\u00e9 \u4f60\u597d \U0001F600", "<|im_start|>user\nhi<|im_end|>",
             "  spaces\n\n\ttabs  ", "it's we'll they're"]
    for i, t in enumerate(texts):
        write("tok_encode", "text%d" % i, bytes([i % 8]) + t.encode())
        write("tokenizer_json", "small", TOKENIZER_JSON.encode())
    write("tok_encode", "invalid_utf8", bytes([0, 0xff, 0xc3, 0x28, 0xe2, 0x82, 0x41, 0xf0, 0x9f]))
    # codecs: byte 0 codec, 1 rows, 2 width, 3 level, then a payload (own encodings come from the target
    # itself: it encodes the payload's floats with each codec, so raw floats suffice as seeds)
    for codec in range(8):
        rows, width = 2, 40
        floats = struct.pack("<%df" % (rows * width), *[((i * 13) % 29 - 14) / 3.0 for i in range(rows * width)])
        write("codec", "codec%d" % codec, bytes([codec, rows, width, 2]) + floats)
    for name, body in API_BODIES.items():
        write("api_body", name, body.encode())
    for name, ini in CONFIGS.items():
        write("config", name, ini.encode())
    print("seeds written under", HERE)


if __name__ == "__main__":
    main()
