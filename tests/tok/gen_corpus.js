// gen_corpus.js - writes the tokenizer comparison corpus: one JSON string per line
// (JSON lines, so a line can hold \r, \n and \r\n), deterministic for a given seed.
//
//   node gen_corpus.js OUT.jsonl [LINES (default 20000)] [SEED (default 1)] [nfd]
//
// Lines mix English, French, German, Spanish, Chinese, Japanese, Korean, Russian,
// Greek, Arabic, Hindi, Thai, code, emoji (ZWJ sequences, flags, skin tones),
// numbers, long whitespace runs (spaces, tabs, no-break and ideographic spaces),
// newlines of every kind inside a line, contractions in every case, and the
// special-token strings of Qwen's vocabulary (whole, partial and glued to text).
// Every line is NFC, so that decode(encode(x)) == x holds for each. With "nfd", the
// lines are instead the NFD forms (marks apart, Hangul as jamo) of those lines that
// NFD changes, with the marks of some shuffled: they test that both tokenizers
// apply Qwen's NFC normalizer alike.
"use strict";
const fs = require("fs");

const out = process.argv[2];
const nLines = parseInt(process.argv[3] || "20000", 10);
let seed = parseInt(process.argv[4] || "1", 10) >>> 0;
const nfdMode = process.argv[5] === "nfd";
if (!out) {
    console.error("usage: node gen_corpus.js OUT.jsonl [LINES] [SEED]");
    process.exit(2);
}

// mulberry32: a small, fixed PRNG so the corpus is the same on every machine
function rnd() {
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rnd() * a.length)];
const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));

const english = [
    "The quick brown fox jumps over the lazy dog.",
    "Let me think about this step by step before I answer.",
    "I don't know what you're talking about, but I'll find out.",
    "They're sure it's been done; we've seen it, haven't we?",
    "I'LL BE THERE. DON'T WAIT. YOU'RE LATE, AREN'T YOU? IT'S FINE.",
    "She said: \"It isn't over until it's over.\"",
    "Wait, maybe the answer is 42. Let's check: 6 * 7 = 42.",
    "Okay, so the user wants a summary of the paper in three sentences.",
    "In 1969, Apollo 11 landed on the Moon; 600 million people watched.",
    "Hello world! How are you doing today?? Fine... thanks!!!",
    "e.g. the U.S.A., i.e. Mr. Smith's co-worker's dog (aged 3½).",
    "Temperatures ranged from -40°C to +50°C (−40°F to 122°F).",
    "ALL CAPS SENTENCE WITH NUMBERS 123 AND SYMBOLS #@$%^&*!",
    "rock'n'roll, o'clock, y'all'd've, 'quoted', ''double'', '''triple'''",
    "we'D, he'S, it'T, they'Re, you'Ve, I'M, she'Ll",
];
const french = [
    "Le cœur a ses raisons que la raison ne connaît point.",
    "Où est la bibliothèque ? Elle est à côté de l'église.",
    "C'est déjà l'été ; les élèves sont partis en vacances à Noël.",
    "Ça va très bien, merci ! Et vous, qu'en pensez-vous ?",
    "L'œuvre de Molière reste étudiée dans les écoles françaises.",
];
const german = ["Größenwahn und Übermut: Straße, Fußgänger, Äpfel, Öl.", "Die Bücher über Mädchen sind schön."];
const spanish = ["¿Dónde está el niño? ¡Está en el jardín con su señora!", "El pingüino comió piñas en la montaña."];
const chinese = [
    "我们今天去公园散步，天气非常好。",
    "人工智能正在改变世界的方方面面。",
    "请问这个问题应该怎么解决？我想了很久。",
    "中华人民共和国成立于一九四九年十月一日。",
    "他说：“明天见！”然后就走了……",
    "机器学习模型需要大量的训练数据和计算资源",
];
const japanese = [
    "今日はとても良い天気ですね。散歩に行きましょう。",
    "東京タワーは高さ三百三十三メートルです。",
    "カタカナとひらがなと漢字が混ざった文章。",
    "ｶﾀｶﾅ（半角）と全角のＡＢＣ１２３。",
];
const korean = ["안녕하세요! 만나서 반갑습니다.", "한국어 문장은 띄어쓰기가 있습니다."];
const russian = ["Привет, как дела? Всё хорошо, спасибо.", "Москва — столица России; её население велико."];
const greek = ["Καλημέρα κόσμε! Τι κάνεις;", "Η ελληνική γλώσσα έχει τόνους: ά έ ή ί ό ύ ώ."];
const arabic = ["مرحبا بالعالم! كيف حالك اليوم؟", "اللغة العربية تكتب من اليمين إلى اليسار."];
const hindi = ["नमस्ते दुनिया! आप कैसे हैं?", "भारत एक विशाल देश है।"];
const thai = ["สวัสดีครับ ยินดีที่ได้รู้จัก", "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ"];
const code = [
    "int main(int argc, char **argv) { return argc > 1 ? atoi(argv[1]) : 0; }",
    "def f(x):\n    return [i ** 2 for i in range(x) if i % 2 == 0]",
    "for (size_t i = 0; i < n; i++) {\n\tsum += a[i] * b[i];\n}",
    "const re = /^(?:[a-z0-9_-]+)@([a-z]+)\\.com$/i; // email",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
    "<div class=\"main\"><p>Hello &amp; welcome</p></div>",
    "if x != None and y <= 3: print(f\"{x!r:>10}\")",
    "$ ls -la /usr/local/bin | grep -v '^d' && echo \"done\"",
    "{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"b\"}}",
    "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
    "    /* indented comment */\n        x <<= 2; y >>= 3; z ^= ~w;",
    "#include <stdio.h>\r\n#define MAX(a, b) ((a) > (b) ? (a) : (b))",
    "a==b||c&&d!==e===f=>g??h?.i",
];
const emoji = [
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇯🇵", "❤️", "🤔💭", "🚀✨🔥", "🏳️‍🌈", "☕️", "👩🏿‍💻", "🧑‍🚀", "🫠", "©®™", "½¾⅓",
];
const specials = [
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
    "<|im_start|>user\n", "<|im_start|>assistant\n<think>\n", "<|im_start", "im_end|>", "<|im_end", "<think",
    "<|vision_start|>", "<|fim_prefix|>", "<<|im_end|>>", "<|im_start|><|im_end|>", "</think>\n\n",
];
const spaces = [" ", "  ", "   ", "    ", "\t", "\t\t", " \t ", "\u00a0", "\u3000", "\u2003", "        "];
const newlines = ["\n", "\r\n", "\r", "\n\n", "\r\n\r\n", "\r\r", "\n\r", " \n", "\n ", "\t\n", "\n\n\n"];

function number() {
    switch (int(0, 7)) {
    case 0: return String(int(0, 9));
    case 1: return String(int(0, 999999999));
    case 2: return (rnd() * 1e6).toFixed(int(0, 6));
    case 3: return int(1, 999) + "," + String(int(0, 999)).padStart(3, "0") + "," + String(int(0, 999)).padStart(3, "0");
    case 4: return "-" + int(1, 99999) + "e" + int(-30, 30);
    case 5: { let s = ""; const n = int(10, 60); for (let i = 0; i < n; i++) s += int(0, 9); return s; }
    case 6: return "0x" + int(0, 0xffffff).toString(16).toUpperCase();
    default: return "١٢٣ ४५६ 七八九 ⅷ ①②";
    }
}

function whitespaceRun() {
    let s = "";
    const n = int(1, 6);
    for (let i = 0; i < n; i++) s += rnd() < 0.5 ? pick(spaces) : pick(newlines);
    if (rnd() < 0.2) s += " ".repeat(int(10, 200));
    return s;
}

const sources = [english, english, english, french, german, spanish, chinese, chinese, japanese, korean,
                 russian, greek, arabic, hindi, thai, code, code];

function fragment() {
    const r = rnd();
    if (r < 0.55) return pick(pick(sources));
    if (r < 0.65) return number();
    if (r < 0.75) return pick(emoji).repeat(int(1, 3));
    if (r < 0.85) return pick(specials);
    return whitespaceRun();
}

function separator() {
    const r = rnd();
    if (r < 0.6) return " ";
    if (r < 0.7) return "";
    if (r < 0.85) return pick(newlines);
    return pick(spaces);
}

const lines = [];
for (let i = 0; i < nLines; i++) {
    let s = "";
    const n = i % 1000 === 999 ? int(100, 300) : int(1, 6); // now and then a long line
    for (let k = 0; k < n; k++) s += (k ? separator() : "") + fragment();
    if (rnd() < 0.1) s = whitespaceRun() + s;
    if (rnd() < 0.1) s += whitespaceRun();
    lines.push(s.normalize("NFC"));
}
// edge cases, always present
lines.push("", " ", "\n", "\r\n", "\r", "a", "'", "'s", "'S", "'LL", "I'LL", "don't", "DON'T", "x'y'z'",
           "\u00a0\u00a0", " ".repeat(1000) + "x", "\n".repeat(50), "\t \t \n \r\n x", "<|im_end|>",
           "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
           "ab".repeat(2000), "的".repeat(3000), "1234567890".repeat(100), "🙂".repeat(500));
if (nfdMode) {
    // NFD, then now and then two adjacent combining marks swapped (NFC reorders them)
    const written = lines.map((l) => l.normalize("NFD")).filter((l, i) => l !== lines[i]).map((l) =>
        rnd() < 0.3 ? l.replace(/(\p{M})(\p{M})/u, "$2$1") : l);
    written.push("e\u0301", "\u1100\u1161\u11A8", "a\u0323\u0302", "\u212B", "\u0958", "q\u0307\u0323");
    lines.length = 0;
    lines.push(...written);
}
fs.writeFileSync(out, lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
console.error(`gen_corpus: ${lines.length} lines, ${Buffer.byteLength(lines.join("\n"))} bytes -> ${out}`);
