/* sampler.h - choosing the next token from logits, reproducibly.
 *
 *     sampler_params p = sampler_defaults();      // greedy unless temperature > 0
 *     p.temperature = 0.7f; p.top_p = 0.9f; p.seed = 42;
 *     int32_t tok = sampler_sample(&p, logits, n_vocab, history, n_history, step, scratch);
 *
 * The choice is a pure function of (params, logits, history, step): the random
 * number for step k is derived from (seed, k) by a counter-based generator, not
 * drawn from a stream. So the last pipeline stage, the single-process runner and a
 * replay after a node failure all pick the same token without carrying any state.
 * Candidates are ordered by (logit desc, id asc): ties never depend on memory order.
 *
 * Order of application: penalties (over `history`) -> temperature -> top-k ->
 * top-p -> min-p -> draw. temperature <= 0 means greedy (argmax, lowest id on ties)
 * after penalties.
 *
 * Exact definitions (sampler.c implements these; test_sampler checks them):
 *   penalties  for each distinct token t among the last penalty_last_n history
 *              entries, with count c: l = l>0 ? l/rep : l*rep; l -= presence + frequency*c.
 *   candidates tokens with finite penalized logit (-inf = masked), ordered
 *              (logit desc, id asc); top_k keeps the first k (heap selection,
 *              identical to a full sort).
 *   softmax    p_i ~ exp(l_i/T - l_0/T) in double, summed in candidate order.
 *   top_p      keeps the shortest prefix whose mass >= top_p * total (>= 1 token;
 *              top_p = 0 keeps only the best).
 *   min_p      keeps candidates with p_i >= min_p * p_0.
 *   draw       u = uniform[0,1) from splitmix64(seed, step); the first candidate whose
 *              cumulative mass exceeds u * total.
 *   logprob    sampled: log of the chosen token's renormalized probability after all
 *              filters; greedy: log-softmax (T = 1) of the penalized logits.
 *   invalid    NULL pointers, n_vocab <= 0 or > the scratch size, a NaN or +inf logit,
 *              all logits -inf, a history id outside [0, n_vocab) in the penalty
 *              window, NaN/inf temperature, top_p < 0 or NaN, min_p > 1 or NaN,
 *              repetition_penalty <= 0, non-finite presence/frequency -> -1.
 */
#ifndef BATON_SAMPLER_H
#define BATON_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

typedef struct sampler_params {
    float temperature;        /* <= 0: greedy */
    int32_t top_k;            /* <= 0: off */
    float top_p;              /* >= 1: off */
    float min_p;              /* <= 0: off */
    float repetition_penalty; /* 1: off; logit/p if > 0 else logit*p, for tokens in history */
    float presence_penalty;   /* 0: off; minus this once for every token in history */
    float frequency_penalty;  /* 0: off; minus this times the token's count in history */
    int32_t penalty_last_n;   /* how much of the history the penalties see; <= 0: all */
    uint64_t seed;
} sampler_params;

sampler_params sampler_defaults(void);

/* Scratch memory for one call with a vocabulary of n_vocab (reusable, not shared
 * between threads). */
typedef struct sampler_scratch sampler_scratch;
sampler_scratch *sampler_scratch_new(int32_t n_vocab);
void sampler_scratch_free(sampler_scratch *s);

/* Pick a token. logits are not modified. history is the sequence so far (prompt and
 * generated tokens) for the penalties; step is the index of the token being chosen
 * among the generated ones (0 for the first). Returns the token id, or -1 if the
 * arguments are invalid. If logprob is not NULL it receives the log-probability of
 * the chosen token under the final distribution. */
int32_t sampler_sample(const sampler_params *p, const float *logits, int32_t n_vocab,
                       const int32_t *history, int32_t n_history, uint64_t step,
                       sampler_scratch *scratch, float *logprob);

/* The log-probability of `token` under the raw logits (log-softmax, temperature
 * 1, no penalties): the largest logit m, then sum of exp(l_i - m) in double in id
 * order, then (l_token - m) - log(sum): one fixed order, so the same logits give
 * the same bits on every machine with the same libm. 0 with the value in *out, or
 * -1 for a token outside [0, n_vocab), a NaN or +inf logit, or all logits -inf. */
int sampler_token_logprob(const float *logits, int32_t n_vocab, int32_t token, float *out);

/* Stop strings: text is fed as it is decoded; the matcher says how much of it is
 * safe to show (cannot be the start of a stop string) and whether a stop string has
 * been completed, even when it spans several tokens. */
typedef struct stop_matcher stop_matcher;
stop_matcher *stop_matcher_new(const char *const *stops, int n_stops);
void stop_matcher_free(stop_matcher *m);
/* Append text. Writes to *out the text that may now be emitted (owned by the
 * matcher, valid until the next call) and its length. Returns 1 if a stop string
 * was matched (out then ends right before it), else 0. */
int stop_matcher_feed(stop_matcher *m, const char *text, size_t len, const char **out, size_t *out_len);
/* After a stop, further feeds return 1 and emit nothing. Empty/NULL stop strings
 * are ignored. Matching is bytewise (UTF-8 safe: stop strings start on a character
 * boundary, so held-back text never splits a character that the input did not).
 * At the end of generation: the text still held back (empty after a stop). */
void stop_matcher_flush(stop_matcher *m, const char **out, size_t *out_len);

#endif
