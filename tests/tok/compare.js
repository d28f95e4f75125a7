// compare.js - line-by-line comparison of two id files (one JSON array per line)
// for the same corpus; prints the first differences with their text.
//
//   node compare.js CORPUS.jsonl WANT GOT LABEL
// Exits 0 when every line is identical (and both files have one line per corpus line).
"use strict";
const fs = require("fs");
const [corpusPath, wantPath, gotPath, label] = process.argv.slice(2);
const readLines = (p) => {
    const l = fs.readFileSync(p, "utf8").split("\n");
    if (l.length && l[l.length - 1] === "") l.pop();
    return l;
};
const corpus = readLines(corpusPath), want = readLines(wantPath), got = readLines(gotPath);
let same = 0, shown = 0;
for (let i = 0; i < corpus.length; i++) {
    if (want[i] !== undefined && want[i] === got[i]) {
        same++;
        continue;
    }
    if (shown++ < 5) {
        console.log(`${label}: line ${i + 1} differs: text ${corpus[i].slice(0, 200)}`);
        console.log(`  reference: ${(want[i] || "(missing)").slice(0, 300)}`);
        console.log(`  ours:      ${(got[i] || "(missing)").slice(0, 300)}`);
    }
}
const ok = same === corpus.length && want.length === corpus.length && got.length === corpus.length;
console.log(`${label}: ${same}/${corpus.length} lines identical (reference ${want.length} lines, ours ${got.length})`);
process.exit(ok ? 0 : 1);
