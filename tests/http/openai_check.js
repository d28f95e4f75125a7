// openai_check.js - Baton's HTTP API through OpenAI's own SDK (the `openai` npm package),
// against the protocol's client (`baton generate`, `baton tokenize`) on the same cluster.
//
//   node openai_check.js BASE_URL API_KEY BATON_BIN SERVER WORKDIR
//
// For every case (text completions and chats; greedy, seeded, with penalties, with a stop
// string, with non-ASCII text), the SDK's non-streaming and streaming answers must both
// equal `baton generate --json` for the same request: the text (for chats: reasoning_content
// + content, split at </think>; with reasoning_format "inline" the whole text as content),
// the finish reason, completion_tokens = the number of tokens baton generate got, and
// prompt_tokens = the number of ids `baton tokenize` gives for the prompt (for a chat: the
// prompt rendered with Qwen's template, special tokens parsed). Prints one line per check;
// exits 1 if any failed.
"use strict";
const { execFileSync } = require("child_process");
const fs = require("fs");
const path = require("path");
const OpenAI = require("openai").default;

const [base, key, baton, server, work] = process.argv.slice(2);
const client = new OpenAI({ baseURL: base, apiKey: key, maxRetries: 0, timeout: 120000 });
let failed = 0, passed = 0;
const check = (ok, what, detail) => {
  if (ok) passed++;
  else failed++;
  console.log(`  ${ok ? "ok  " : "FAIL"} ${what}${ok ? "" : ": " + detail}`);
};

function batonArgs(p) {
  const a = ["--server", server, "--api-key", key, "--json", "--max-tokens", String(p.max_tokens),
             "--temperature", String(p.temperature ?? 1)];
  if (p.seed !== undefined) a.push("--seed", String(p.seed));
  if (p.top_p !== undefined) a.push("--top-p", String(p.top_p));
  if (p.top_k !== undefined) a.push("--top-k", String(p.top_k));
  if (p.min_p !== undefined) a.push("--min-p", String(p.min_p));
  if (p.presence_penalty !== undefined) a.push("--presence-penalty", String(p.presence_penalty));
  if (p.frequency_penalty !== undefined) a.push("--frequency-penalty", String(p.frequency_penalty));
  for (const s of [].concat(p.stop ?? [])) a.push("--stop", s);
  return a;
}

let nChat = 0;
function reference(kind, p) {
  const a = ["generate", ...batonArgs(p)];
  if (kind === "chat") {
    const f = path.join(work, `chat-${nChat++}.json`);
    fs.writeFileSync(f, JSON.stringify(p.messages));
    a.push("--chat", f);
  } else {
    a.push("--prompt", p.prompt);
  }
  const r = JSON.parse(execFileSync(baton, a, { encoding: "utf8" }));
  if (r.status !== "OK") throw new Error(`baton generate: ${r.status} ${r.message}`);
  return r;
}

function countTokens(text, special) {
  const a = ["tokenize", "--server", server, "--api-key", key, "--text", text];
  if (special) a.push("--special");
  return execFileSync(baton, a, { encoding: "utf8" }).trim().split(",").length;
}

// Qwen's template (QwQ): what the coordinator renders a chat into before tokenising.
function renderChat(msgs) {
  return msgs.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join("") + "<|im_start|>assistant\n<think>\n";
}

// The reference text as the API must split it.
function splitThink(text) {
  const i = text.indexOf("</think>");
  if (i < 0) return { reasoning: text, content: "" };
  return { reasoning: text.slice(0, i), content: text.slice(i + 8).replace(/^[\r\n]+/, "") };
}

const finishOf = (r) => (r === "length" ? "length" : "stop");

async function runCase(kind, name, p) {
  const ref = reference(kind, p);
  const inline = p.reasoning_format === "inline";
  const want = kind === "chat" && !inline ? splitThink(ref.text) : { reasoning: "", content: ref.text };
  const promptTokens = kind === "chat" ? countTokens(renderChat(p.messages), true) : countTokens(p.prompt, false);
  const wantUsage = { prompt_tokens: promptTokens, completion_tokens: ref.tokens.length,
                      total_tokens: promptTokens + ref.tokens.length };
  const api = kind === "chat" ? client.chat.completions : client.completions;
  for (const stream of [false, true]) {
    const label = `${kind} ${name} (${stream ? "stream" : "whole"})`;
    const req = { model: "baton-test", ...p };
    let got = { reasoning: "", content: "" }, usage = null, finish = null, chunks = 0;
    if (!stream) {
      const r = await api.create(req);
      const c = r.choices[0];
      if (kind === "chat") got = { reasoning: c.message.reasoning_content ?? "", content: c.message.content ?? "" };
      else got.content = c.text;
      usage = r.usage;
      finish = c.finish_reason;
    } else {
      const s = await api.create({ ...req, stream: true, stream_options: { include_usage: true } });
      for await (const ev of s) {
        chunks++;
        if (ev.usage) usage = ev.usage;
        const c = ev.choices[0];
        if (!c) continue;
        if (kind === "chat") {
          got.reasoning += c.delta.reasoning_content ?? "";
          got.content += c.delta.content ?? "";
        } else {
          got.content += c.text;
        }
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    const same = got.content === want.content && got.reasoning === want.reasoning;
    check(same, `${label}: text equals baton generate (${JSON.stringify((want.reasoning + want.content).slice(0, 40))}...)`,
          `got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    check(finish === finishOf(ref.finish_reason), `${label}: finish_reason ${finish}`, `want ${finishOf(ref.finish_reason)}`);
    const u = usage && { prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens,
                         total_tokens: usage.total_tokens };
    check(JSON.stringify(u) === JSON.stringify(wantUsage), `${label}: usage ${JSON.stringify(u)}`,
          `want ${JSON.stringify(wantUsage)} (tokenizer and baton generate)`);
    if (stream) check(chunks > 2, `${label}: ${chunks} stream chunks`, "expected several");
  }
  return ref;
}

(async () => {
  const greedy = await runCase("completion", "greedy", { prompt: "The capital of France is", max_tokens: 24, temperature: 0 });
  await runCase("completion", "seeded top_k/top_p/min_p", {
    prompt: "Once upon a time", max_tokens: 24, temperature: 0.9, top_p: 0.95, top_k: 40, min_p: 0.02, seed: 1234 });
  await runCase("completion", "seeded penalties", {
    prompt: "List: apples, pears,", max_tokens: 24, temperature: 0.7, top_k: 40, seed: 99, presence_penalty: 0.5, frequency_penalty: 0.3 });
  await runCase("completion", "non-ASCII prompt", { prompt: "日本語のテキスト 🎉 — naïve café", max_tokens: 32, temperature: 0 });
  // a stop string taken from inside the greedy answer: the text ends before it, nothing of it leaks
  const stop = Array.from(greedy.text).slice(8, 11).join(""); // whole characters
  const cut = await runCase("completion", `stop ${JSON.stringify(stop)}`, {
    prompt: "The capital of France is", max_tokens: 24, temperature: 0, stop: [stop, "@@never@@"] });
  check(cut.text === greedy.text.slice(0, greedy.text.indexOf(stop)), "the stop string cut the greedy text where it starts",
        `${JSON.stringify(cut.text)} vs ${JSON.stringify(greedy.text)}`);
  await runCase("chat", "greedy", {
    messages: [{ role: "system", content: "You are terse." }, { role: "user", content: "Name three rivers." }],
    max_tokens: 24, temperature: 0 });
  await runCase("chat", "seeded, several turns", {
    messages: [{ role: "user", content: "Hi!" }, { role: "assistant", content: "Hello. How can I help?" },
               { role: "user", content: "Tell me a joke about Ünicode ✓" }],
    max_tokens: 24, temperature: 0.8, seed: 7, top_k: 50 });
  await runCase("chat", "reasoning inline", {
    messages: [{ role: "user", content: "Why is the sky blue?" }], max_tokens: 16, temperature: 0, reasoning_format: "inline" });
  const models = await client.models.list();
  check(models.data.length === 1 && models.data[0].id === "baton-test", `models.list: ${models.data.map((m) => m.id)}`, "");
  console.log(`openai_check: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})().catch((e) => {
  console.log(`FAIL openai_check: ${e.stack || e}`);
  process.exit(1);
});
