// page_check.js - the chat page (GET /) in headless Chromium, driven by puppeteer-core.
//
//   node page_check.js BASE_URL API_KEY PROMPT MAX_TOKENS SCREENSHOT.png
//
// Opens the page, enters the API key, sets temperature 0 and max_tokens, types PROMPT
// into the message box and presses Enter; waits until the answer is complete, checking
// meanwhile that it grew in several steps (streamed, not shown at once: a MutationObserver counts
// the updates of the answer and reasoning boxes, so a fast stream whose events arrive in one
// network read still shows one update per event, and polling speed does not matter). Then asks the
// API itself (POST /v1/chat/completions, not streamed) for the same chat and requires the
// page's reasoning and answer to equal the API's reasoning_content and content; the
// tokens/s line and the stage plan table must be shown. Saves a screenshot. Exit 1 on failure.
"use strict";
const puppeteer = require("puppeteer-core");

const [base, key, prompt, maxTokens, shot] = process.argv.slice(2);
const chromium = process.env.CHROMIUM || "/usr/bin/chromium";

(async () => {
  const browser = await puppeteer.launch({
    executablePath: chromium, headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
  });
  let failed = false;
  const check = (ok, what) => {
    console.log(`  ${ok ? "ok  " : "FAIL"} ${what}`);
    if (!ok) failed = true;
  };
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 700 });
    page.on("pageerror", (e) => check(false, `page error: ${e.message}`));
    await page.goto(base + "/", { waitUntil: "load" });
    await page.type("#key", key);
    await page.$eval("#key", (e) => e.dispatchEvent(new Event("change")));
    for (const [id, v] of [["#temperature", "0"], ["#max_tokens", maxTokens], ["#top_k", "0"]]) {
      await page.$eval(id, (e) => (e.value = ""));
      await page.type(id, v);
    }
    await page.type("#prompt", prompt);
    await page.evaluate(() => {
      window.__updates = 0;
      new MutationObserver((recs) => {
        for (const r of recs) {
          const t = r.target.nodeType === 1 ? r.target : r.target.parentElement;
          if (t && (t.classList.contains("answer") || t.classList.contains("reasoning"))) window.__updates++;
        }
      }).observe(document.body, { subtree: true, childList: true, characterData: true });
    });
    await page.keyboard.press("Enter");
    // watch the answer grow until it is done
    const sizes = new Set();
    const t0 = Date.now();
    let state = "";
    while (Date.now() - t0 < 120000) {
      const s = await page.evaluate(() => {
        const box = document.querySelector(".assistant");
        if (!box) return null;
        return { state: box.dataset.state, len: box.querySelector(".reasoning").textContent.length +
                 box.querySelector(".answer").textContent.length };
      });
      if (s) {
        sizes.add(s.len);
        state = s.state;
        if (state === "done" || state === "error") break;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    const shown = await page.evaluate(() => {
      const box = document.querySelector(".assistant");
      return { reasoning: box.querySelector(".reasoning").textContent, answer: box.querySelector(".answer").textContent,
               stats: box.querySelector(".stats").textContent, error: (box.querySelector(".error") || {}).textContent,
               finish: box.dataset.finish, stages: document.querySelectorAll("#stages tr").length - 1,
               plan: document.querySelector("#plan").textContent };
    });
    check(state === "done", `the answer is complete (state ${state}${shown.error ? ": " + shown.error : ""})`);
    const updates = await page.evaluate(() => window.__updates);
    check(updates >= 3, `the answer grew in ${updates} updates while it streamed (${sizes.size} seen by polling)`);
    // the same chat through the API
    const resp = await fetch(base + "/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json", Authorization: "Bearer " + key },
      body: JSON.stringify({ messages: [{ role: "user", content: prompt }], max_tokens: Number(maxTokens),
                             temperature: 0, top_k: 0 }),
    });
    const api = await resp.json();
    const m = api.choices[0].message;
    check(shown.reasoning === (m.reasoning_content || "") && shown.answer === (m.content || ""),
          `the page shows the API's text (${JSON.stringify((shown.reasoning + shown.answer).slice(0, 40))}...)` +
          (shown.reasoning === (m.reasoning_content || "") ? "" : ` - page ${JSON.stringify(shown.reasoning)} vs API ${JSON.stringify(m.reasoning_content)}`));
    check(/tokens\/s/.test(shown.stats) && shown.stats.startsWith(`${api.usage.completion_tokens} tokens`),
          `tokens/s shown: "${shown.stats}"`);
    await page.waitForFunction(() => document.querySelectorAll("#stages tr").length > 1, { timeout: 10000 })
      .catch(() => {});
    const stages = await page.evaluate(() => document.querySelectorAll("#stages tr").length - 1);
    check(stages >= 1, `the stage plan is shown: ${stages} stage(s): ${(await page.$eval("#plan", (e) => e.textContent)).slice(0, 80)}`);
    await page.evaluate(() => document.querySelector("details").open = true);
    await page.screenshot({ path: shot });
    console.log(`  screenshot: ${shot}`);
  } catch (e) {
    check(false, `page_check: ${e.stack || e}`);
  }
  await browser.close();
  process.exit(failed ? 1 : 0);
})();
