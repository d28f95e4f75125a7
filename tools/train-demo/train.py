#!/usr/bin/python3
"""train.py - trains Baton's demo model: a small Qwen2-architecture model on the
fortunes of Debian's `fortunes` package, with Qwen's real tokenizer.

    tools/train-demo/make.sh             (the whole recipe: corpus, ids, training)
    train.py --data DIR --out FILE.btw [--steps N] [--threads 2] [--seed 1]

DIR holds train.ids and heldout.ids (one JSON array of token ids per fortune, made
by `baton-run --tokenizer-json tokenizer.json --tokenize`) and n_vocab (the
tokenizer's vocabulary size, rounded up to 128 as baton-mkmodel rounds it).

The model is Qwen2 exactly as Baton (and llama.cpp) runs it: token embedding, per
layer RMSNorm -> Q/K/V with biases -> NeoX RoPE -> causal GQA attention -> O, then
RMSNorm -> SwiGLU (gate, up, down), residual adds; final RMSNorm and an untied
output head without bias.

Unused vocabulary rows can never win (argument in tools/train-demo/README.md):
  * dims 0..31 of the residual stream (one whole Q8_0 block) are a constant
    feature: every embedding row holds 1.0 there, and the rows 0..31 of every
    attn_output and ffn_down matrix are zero, so no layer writes into them; the
    output norm's weight is 1.0 there. After the final norm that block is 32 equal
    positive numbers x0 = 1/rms(h) for any input.
  * a token the corpus never uses gets the embedding row [1]*32 + [0]*224 and the
    output row [-M]*32 + [0]*224, so its logit is -32 M x0, while every trained
    token's logit is at least -(a bound B computed from the weights) * x0; M is
    chosen as 2 B / 32 after training, from the Q8_0 values the GGUF will hold.
Training needs only the rows of the used tokens: the softmax runs over them.

Deterministic: fixed seeds, fixed thread count, batches drawn from a seeded
generator; the same inputs and torch build give the same weights.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch

CONST = 32      # the constant block: residual dims [0, CONST)
EOT = 151643    # <|endoftext|>: ends every fortune


def load_docs(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def stream_of(docs):
    out = []
    for d in docs:
        out.extend(d)
        out.append(EOT)
    return np.array(out, dtype=np.int64)


class Qwen2Small(torch.nn.Module):
    """Qwen2 over a compact vocabulary of V used tokens."""

    def __init__(self, V, E, L, H, KV, FF, rope_base, eps):
        super().__init__()
        self.E, self.L, self.H, self.KV, self.hd, self.FF = E, L, H, KV, E // H, FF
        self.rope_base, self.eps = rope_base, eps
        p = torch.nn.Parameter
        std = 0.02
        self.emb = p(torch.randn(V, E) * std)
        self.layers = torch.nn.ModuleList()
        kd = KV * self.hd
        for _ in range(L):
            m = torch.nn.Module()
            m.attn_norm = p(torch.ones(E))
            m.wq, m.bq = p(torch.randn(E, E) * std), p(torch.zeros(E))
            m.wk, m.bk = p(torch.randn(kd, E) * std), p(torch.zeros(kd))
            m.wv, m.bv = p(torch.randn(kd, E) * std), p(torch.zeros(kd))
            m.wo = p(torch.randn(E, E) * std / math.sqrt(2 * L))
            m.ffn_norm = p(torch.ones(E))
            m.wg = p(torch.randn(FF, E) * std)
            m.wu = p(torch.randn(FF, E) * std)
            m.wd = p(torch.randn(E, FF) * std / math.sqrt(2 * L))
            self.layers.append(m)
        self.out_norm = p(torch.ones(E))
        self.head = p(torch.randn(V, E) * std)
        self.enforce()

    @torch.no_grad()
    def enforce(self):
        """The constant block: set after init and after every optimizer step."""
        self.emb[:, :CONST] = 1.0
        for m in self.layers:
            m.wo[:CONST] = 0.0
            m.wd[:CONST] = 0.0
        self.out_norm[:CONST] = 1.0

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def rope(self, x, cos, sin):
        h = self.hd // 2
        x1, x2 = x[..., :h], x[..., h:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    def forward(self, ids):
        B, T = ids.shape
        H, KV, hd = self.H, self.KV, self.hd
        inv = self.rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
        cos, sin = torch.cos(ang).float(), torch.sin(ang).float()
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = self.emb[ids]
        for m in self.layers:
            xn = self.rms(x, m.attn_norm)
            q = (xn @ m.wq.T + m.bq).view(B, T, H, hd).transpose(1, 2)
            k = (xn @ m.wk.T + m.bk).view(B, T, KV, hd).transpose(1, 2)
            v = (xn @ m.wv.T + m.bv).view(B, T, KV, hd).transpose(1, 2)
            q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
            k = k.repeat_interleave(H // KV, dim=1)  # query head h reads kv head h // (H / KV)
            v = v.repeat_interleave(H // KV, dim=1)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
            o = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, self.E)
            x = x + o @ m.wo.T
            xn = self.rms(x, m.ffn_norm)
            x = x + (torch.nn.functional.silu(xn @ m.wg.T) * (xn @ m.wu.T)) @ m.wd.T
        return self.rms(x, self.out_norm) @ self.head.T


def bigram_init(model, tr, p_uni, E, rng, rank=64):
    """Start from an interpolated bigram model, written into the embedding and the
    head (the layers start near zero and then learn what a bigram cannot see).
    The bigram probability is lam_c C(c,t)/N(c) + (1-lam_c) p(t) with Witten-Bell's
    lam_c = N(c) / (N(c) + T(c)) (T(c): distinct tokens seen after c), so
    log P(t|c) = log p(t) + A(c,t) + a constant of c, where A(c,t) =
    log(1 + C(c,t) / (T(c) p(t))) is zero for every pair never seen:
    a sparse matrix, of which a rank-64 randomized SVD A ~ u_c . v_t is taken.
    Residual layout after the embedding: [1]*32 (the constant block), [f_c]*32 (a
    filler block that makes |h|^2 = E, so rms(h) = 1 and x0 = 1 for every token),
    u_c * s (64 dims). Head rows: log p(t) / 32 on the constant block, 0 on the
    filler, v_t / s on the rest; so the logits start as the bigram's log-probs."""
    V = len(p_uni)
    pairs, cnt = np.unique(tr[:-1] * V + tr[1:], return_counts=True)
    rows, cols = pairs // V, pairs % V
    t_c = np.bincount(rows, minlength=V).astype(np.float64)  # distinct followers of c
    # Witten-Bell: lam_c = N(c) / (N(c) + T(c)), so lam_c / (1 - lam_c) C / N(c) = C / T(c)
    vals = np.log1p(cnt / (t_c[rows] * p_uni[cols]))

    def mul(X):   # A @ X
        Y = np.zeros((V, X.shape[1]))
        np.add.at(Y, rows, vals[:, None] * X[cols])
        return Y

    def mul_t(X):  # A.T @ X
        Y = np.zeros((V, X.shape[1]))
        np.add.at(Y, cols, vals[:, None] * X[rows])
        return Y

    k = rank + 10
    Q, _ = np.linalg.qr(mul(rng.standard_normal((V, k))))
    for _ in range(3):
        Q, _ = np.linalg.qr(mul_t(Q))
        Q, _ = np.linalg.qr(mul(Q))
    Bt = mul_t(Q)                                   # (A^T Q) = B^T, V x k
    Ub, S, Vt = np.linalg.svd(Bt.T, full_matrices=False)
    U = (Q @ Ub)[:, :rank] * np.sqrt(S[:rank])
    W = Vt[:rank].T * np.sqrt(S[:rank])
    room = E - 2 * CONST                            # |u_c s|^2 <= room - a little
    s = math.sqrt(room) * 0.95 / np.linalg.norm(U, axis=1).max()
    u = U * s
    f = np.sqrt((E - CONST - (u ** 2).sum(1)) / CONST)  # |h|^2 = CONST + CONST f^2 + |u|^2 = E
    with torch.no_grad():
        model.emb[:, CONST:2 * CONST] = torch.from_numpy(np.repeat(f[:, None], CONST, 1)).float()
        model.emb[:, 2 * CONST:2 * CONST + rank] = torch.from_numpy(u).float()
        model.head[:, :CONST] = torch.from_numpy(np.log(p_uni) / CONST).float()[:, None]
        model.head[:, CONST:2 * CONST] = 0.0
        model.head[:, 2 * CONST:2 * CONST + rank] = torch.from_numpy(W / s).float()
        for m in model.layers:  # the layers start quiet: the bigram is the starting point
            m.wo.mul_(0.1)
            m.wd.mul_(0.1)
    print(f"train.py: bigram initialisation: {len(vals)} pairs, rank {rank}, singular values "
          f"{S[0]:.1f} .. {S[rank - 1]:.1f}", flush=True)


def evaluate(model, stream, seq):
    """Mean negative log-likelihood (nats) of every token after the first of each
    non-overlapping window of seq + 1 tokens."""
    model.eval()
    tot, n = 0.0, 0
    with torch.no_grad():
        starts = list(range(0, len(stream) - 1, seq))
        for i in range(0, len(starts), 16):
            rows = []
            for s in starts[i:i + 16]:
                w = stream[s:s + seq + 1]
                if len(w) < 2:
                    continue
                rows.append(torch.from_numpy(w))
            for w in rows:  # windows differ in length only at the end
                logits = model(w[None, :-1])
                loss = torch.nn.functional.cross_entropy(logits[0], w[1:], reduction="sum")
                tot += loss.item()
                n += len(w) - 1
    model.train()
    return tot / n, n


# ---------------------------------------------------------------- bound and export

def q8_0_dequant(a):
    """What Baton's Q8_0 (kernels/quant.c) keeps of rows a (float32, last dim a
    multiple of 32): per block d = max|x| / 127 stored as f16, codes round(x / d)."""
    b = a.reshape(*a.shape[:-1], -1, 32).astype(np.float32)
    amax = np.abs(b).max(-1, keepdims=True)
    d = (amax / 127.0).astype(np.float16).astype(np.float32)
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0)
    q = np.clip(np.round(b * inv), -127, 127)
    return (q * d).reshape(a.shape)


def stored(w):
    """A matrix as the GGUF will hold it: f16 in the weights file, then Q8_0."""
    return q8_0_dequant(w.astype(np.float16).astype(np.float32)).astype(np.float64)


def logit_bound(P, E):
    """B such that, for any token sequence and in exact arithmetic over the stored
    weights, every trained token's logit >= -B * x0, x0 = 1 / rms(h) being the
    value of the constant block after the final norm. See README.md."""
    n = E
    sq = math.sqrt(n)
    # |h_i| bound on the non-constant dims: embedding rows, then what each layer adds
    Hinf = np.abs(stored(P["emb"])[:, CONST:]).max()
    H2 = np.linalg.norm(stored(P["emb"])[:, CONST:], axis=1).max()
    for l in range(P["n_layer"]):
        g = lambda k: P[f"l{l}.{k}"]
        # normalized input: ||x||_2 <= max|w_norm| * sqrt(n) (|h|/rms(h) has norm sqrt(n))
        xa = np.abs(g("attn_norm")).max() * sq
        wv, bv = stored(g("wv")), g("bv").astype(np.float64)
        hd, KV = P["hd"], P["KV"]
        # a head's output is a convex combination of its v vectors
        vh = [np.linalg.norm(wv[j * hd:(j + 1) * hd], 2) * xa + np.linalg.norm(bv[j * hd:(j + 1) * hd])
              for j in range(KV)]
        att = math.sqrt(sum(vh[h // (P["H"] // KV)] ** 2 for h in range(P["H"])))
        wo = stored(g("wo"))
        H2 += np.linalg.norm(wo, 2) * att
        Hinf += np.linalg.norm(wo, axis=1).max() * att
        xf = np.abs(g("ffn_norm")).max() * sq
        wg, wu, wd = stored(g("wg")), stored(g("wu")), stored(g("wd"))
        gate_inf = np.linalg.norm(wg, axis=1).max() * xf + 0.2785  # |silu(z)| <= |z| + 0.2785
        mid = gate_inf * np.linalg.norm(wu, 2) * xf                # ||silu(gx) * ux||_2
        H2 += np.linalg.norm(wd, 2) * mid
        Hinf += np.linalg.norm(wd, axis=1).max() * mid
    # logit_t / x0 = sum_{i<32} w_ti + sum_{i>=32} w_ti g_i h_i   (x_i = g_i h_i x0)
    W = stored(P["head"])
    gn = np.abs(P["out_norm"][CONST:]).max()
    const = W[:, :CONST].sum(1)
    rest = np.linalg.norm(W[:, CONST:], axis=1) * gn * H2
    B = float((rest - const).max())
    return B, float(H2), float(Hinf)


def write_btw(path, hp, tensors):
    """The weights file baton-mkmodel --weights reads: b"BATONW1\\n", u64 length of
    a JSON header, the header, zero padding to 32, then the data. Header:
    {"hparams": {...}, "tensors": [{"name", "ne": [ne0, ne1], "dtype": "f16"|"f32",
    "offset", "row_ids" (offset of int32[n_rows], absent: every row stored),
    "n_rows", "fill" (offset of float32[ne0]: the row of every id not listed)}]}
    Offsets are bytes from the start of the data, each a multiple of 32."""
    blobs, meta, off = [], [], 0

    def add(b):
        nonlocal off
        o = off
        pad = (-len(b)) % 32
        blobs.append(b + b"\0" * pad)
        off += len(b) + pad
        return o

    for t in tensors:
        a = t["data"]
        m = {"name": t["name"], "ne": t["ne"], "dtype": t["dtype"]}
        m["offset"] = add(a.astype(np.float16 if t["dtype"] == "f16" else np.float32).tobytes())
        if "row_ids" in t:
            m["n_rows"] = int(len(t["row_ids"]))
            m["row_ids"] = add(np.asarray(t["row_ids"], dtype="<i4").tobytes())
            m["fill"] = add(np.asarray(t["fill"], dtype="<f4").tobytes())
        meta.append(m)
    head = json.dumps({"hparams": hp, "tensors": meta}, indent=1).encode()
    with open(path + ".part", "wb") as f:
        f.write(b"BATONW1\n")
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        f.write(b"\0" * ((-(16 + len(head))) % 32))
        for b in blobs:
            f.write(b)
    os.replace(path + ".part", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--meta", help="write figures and unigram counts here (JSON)")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--embd", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ff", type=int, default=384)
    ap.add_argument("--eval-every", type=int, default=100000)
    ap.add_argument("--init", choices=("bigram", "unigram"), default="bigram")
    ap.add_argument("--export-only", metavar="CKPT", help="skip training: export the checkpoint train.py saved")
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(a.seed)
    train_docs = load_docs(os.path.join(a.data, "train.ids"))
    held_docs = load_docs(os.path.join(a.data, "heldout.ids"))
    with open(os.path.join(a.data, "n_vocab")) as f:
        n_vocab = int(f.read())
    train_s, held_s = stream_of(train_docs), stream_of(held_docs)
    used = np.unique(np.concatenate([train_s, held_s]))  # the corpus's tokens, sorted
    compact = np.full(n_vocab, -1, dtype=np.int64)
    compact[used] = np.arange(len(used))
    tr, he = compact[train_s], compact[held_s]
    V = len(used)
    print(f"train.py: {len(train_docs)} train fortunes ({len(tr)} tokens), {len(held_docs)} held out "
          f"({len(he)} tokens), {V} distinct tokens of {n_vocab}", flush=True)

    # the unigram baseline: train counts, add-one over the used tokens
    counts = np.bincount(tr, minlength=V).astype(np.float64)
    p_uni = (counts + 1) / (counts.sum() + V)
    uni_nll = float(-np.log(p_uni[he[1:]]).mean())
    print(f"train.py: unigram baseline, held out: perplexity {math.exp(uni_nll):.2f}", flush=True)

    model = Qwen2Small(V, a.embd, a.layers, a.heads, a.kv_heads, a.ff, 10000.0, 1e-6)
    if a.init == "bigram":
        bigram_init(model, tr, p_uni, a.embd, rng)
    else:
      with torch.no_grad():
        # start from the unigram model: the constant block after the final norm is
        # x0 = 1 / rms(h) ~ sqrt(E / CONST) at initialisation, so these head columns
        # give every token the logit log p_unigram (training then only has to learn
        # what the context adds; on 2 shared cores the first hundred steps count)
        x0 = math.sqrt(a.embd / CONST)
        model.head[:, :CONST] = torch.from_numpy(np.log(p_uni)).float()[:, None] / (CONST * x0)
    nll0, _ = evaluate(model, he, a.seq)
    print(f"train.py: after initialisation ({a.init}): held-out perplexity {math.exp(nll0):.2f}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95))
    warm = 10
    t0 = time.time()
    if a.export_only:
        model.load_state_dict(torch.load(a.export_only))
    for step in range(1, 0 if a.export_only else a.steps + 1):
        lr = a.lr * min(1.0, step / warm)  # constant after warm-up: N steps of a longer run = a run of N
        for g in opt.param_groups:
            g["lr"] = lr
        starts = rng.integers(0, len(tr) - a.seq - 1, size=a.batch)
        batch = torch.from_numpy(np.stack([tr[s:s + a.seq + 1] for s in starts]))
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        model.enforce()
        if step % 10 == 0 or step == 1:
            el = time.time() - t0
            print(f"step {step}/{a.steps} loss {loss.item():.3f} lr {lr:.2e} {el:.0f} s "
                  f"({step * a.batch * a.seq / el:.0f} tokens/s)", flush=True)
        if step % 10 == 0:  # a checkpoint: --export-only turns it into the model of a --steps STEP run
            torch.save(model.state_dict(), f"{a.out}.step{step}.pt")
        if step % a.eval_every == 0 and step != a.steps:
            nll, _ = evaluate(model, he[:20000], a.seq)
            print(f"step {step}: held-out perplexity (first 20000 tokens) {math.exp(nll):.2f}", flush=True)
    train_s_time = time.time() - t0
    if not a.export_only:
        torch.save(model.state_dict(), a.out + ".pt")  # export again with --export-only
    nll, n_eval = evaluate(model, he, a.seq)
    print(f"train.py: held out ({n_eval} tokens): perplexity {math.exp(nll):.2f}, unigram {math.exp(uni_nll):.2f}",
          flush=True)

    # ---- export
    P = {"n_layer": a.layers, "hd": a.embd // a.heads, "H": a.heads, "KV": a.kv_heads}
    np32 = lambda t: t.detach().numpy().astype(np.float32)
    P["emb"], P["head"], P["out_norm"] = np32(model.emb), np32(model.head), np32(model.out_norm)
    for l, m in enumerate(model.layers):
        for k in ("attn_norm", "wq", "bq", "wk", "bk", "wv", "bv", "wo", "ffn_norm", "wg", "wu", "wd"):
            P[f"l{l}.{k}"] = np32(getattr(m, k))
    B, H2, Hinf = logit_bound(P, a.embd)
    M = max(2.0 * B / CONST, 1.0)
    if M / 127 >= 65504:
        sys.exit(f"train.py: M = {M:g} does not fit a Q8_0 block scale (f16)")
    print(f"train.py: hidden-state bound ||h_rest||_2 <= {H2:.4g}; trained logits >= -{B:.4g} x0; "
          f"unused rows [-{M:.4g}]*32: logit -{CONST * M:.4g} x0", flush=True)
    fill_emb = np.zeros(a.embd, np.float32)
    fill_emb[:CONST] = 1.0
    fill_out = np.zeros(a.embd, np.float32)
    fill_out[:CONST] = -M
    hp = {"name": "Baton Demo (fortunes)", "basename": "baton-demo", "n_layer": a.layers, "n_embd": a.embd,
          "n_head": a.heads, "n_head_kv": a.kv_heads, "n_ff": a.ff, "n_ctx": 2048, "rope_base": 10000.0,
          "rms_eps": 1e-6}
    T = [{"name": "token_embd.weight", "ne": [a.embd, n_vocab], "dtype": "f16", "data": P["emb"],
          "row_ids": used, "fill": fill_emb}]
    names = {"attn_norm": ("attn_norm.weight", "f32"), "wq": ("attn_q.weight", "f16"), "bq": ("attn_q.bias", "f32"),
             "wk": ("attn_k.weight", "f16"), "bk": ("attn_k.bias", "f32"), "wv": ("attn_v.weight", "f16"),
             "bv": ("attn_v.bias", "f32"), "wo": ("attn_output.weight", "f16"), "ffn_norm": ("ffn_norm.weight", "f32"),
             "wg": ("ffn_gate.weight", "f16"), "wu": ("ffn_up.weight", "f16"), "wd": ("ffn_down.weight", "f16")}
    for l in range(a.layers):
        for k, (nm, dt) in names.items():
            w = P[f"l{l}.{k}"]
            T.append({"name": f"blk.{l}.{nm}", "ne": [w.shape[-1], w.shape[0] if w.ndim == 2 else 1],
                      "dtype": dt, "data": w})
    T.append({"name": "output_norm.weight", "ne": [a.embd, 1], "dtype": "f32", "data": P["out_norm"]})
    T.append({"name": "output.weight", "ne": [a.embd, n_vocab], "dtype": "f16", "data": P["head"],
              "row_ids": used, "fill": fill_out})
    write_btw(a.out, hp, T)
    print(f"train.py: wrote {a.out} ({os.path.getsize(a.out)} bytes)", flush=True)
    if a.meta:
        meta = {"train_tokens": int(len(tr)), "heldout_tokens": int(n_eval), "distinct_tokens": int(V),
                "steps": a.steps, "batch": a.batch, "seq": a.seq, "seed": a.seed, "train_seconds": round(train_s_time),
                "heldout_perplexity": round(math.exp(nll), 3), "unigram_perplexity": round(math.exp(uni_nll), 3),
                "logit_bound": B, "unused_row_value": -M,
                "unigram": {"ids": used.tolist(), "counts": counts.astype(np.int64).tolist()}}
        with open(a.meta, "w") as f:
            json.dump(meta, f)
            f.write("\n")


if __name__ == "__main__":
    main()
