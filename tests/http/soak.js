// soak.js - CLIENTS concurrent streaming clients of Baton's HTTP API for SECONDS seconds.
//
//   node soak.js BASE_URL API_KEY CLIENTS SECONDS
//
// Each client sends streaming chat or text completions one after another (seeded, top_k 40
// sampling, 8 to 48 tokens, ignore_eos) until the time is up. Every request must end
// with [DONE], finish_reason "length", usage.completion_tokens = max_tokens and
// prompt_tokens > 0; any HTTP error, stream error or mismatch counts as an error.
// Prints one JSON line {started, completed, errors, tokens, seconds, first_errors}
// (the shell test compares completed with the coordinator's own request counter);
// exits 1 if started != completed or errors > 0.
"use strict";
const OpenAI = require("openai").default;

const [base, key, nClients, seconds] = process.argv.slice(2);
const client = new OpenAI({ baseURL: base, apiKey: key, maxRetries: 0, timeout: 120000 });
const stats = { started: 0, completed: 0, errors: 0, tokens: 0, seconds: 0, first_errors: [] };
const t0 = Date.now();
const until = t0 + Number(seconds) * 1000;

function fail(what) {
  stats.errors++;
  if (stats.first_errors.length < 5) stats.first_errors.push(what);
}

async function one(c, i) {
  const max = 8 + ((c * 7 + i * 13) % 41);
  const chat = (c + i) % 2 === 0;
  const common = { model: "baton-test", max_tokens: max, temperature: 0.8, top_k: 40, seed: c * 1000 + i, ignore_eos: true,
                   stream: true, stream_options: { include_usage: true } };
  stats.started++;
  try {
    const s = chat
      ? await client.chat.completions.create({ ...common, messages: [{ role: "user", content: `client ${c} request ${i}` }] })
      : await client.completions.create({ ...common, prompt: `Client ${c}, request ${i}:` });
    let usage = null, finish = null;
    for await (const ev of s) {
      if (ev.usage) usage = ev.usage;
      if (ev.choices[0] && ev.choices[0].finish_reason) finish = ev.choices[0].finish_reason;
    }
    if (finish !== "length") return fail(`client ${c} request ${i}: finish_reason ${finish}`);
    if (!usage || usage.completion_tokens !== max || !(usage.prompt_tokens > 0))
      return fail(`client ${c} request ${i}: usage ${JSON.stringify(usage)}, max_tokens ${max}`);
    stats.completed++;
    stats.tokens += usage.completion_tokens;
  } catch (e) {
    fail(`client ${c} request ${i}: ${e.status || ""} ${e.message}`);
  }
}

async function loop(c) {
  for (let i = 0; Date.now() < until; i++) await one(c, i);
}

(async () => {
  await Promise.all(Array.from({ length: Number(nClients) }, (_, c) => loop(c)));
  stats.seconds = (Date.now() - t0) / 1000;
  console.log(JSON.stringify(stats));
  process.exit(stats.errors || stats.started !== stats.completed ? 1 : 0);
})();
