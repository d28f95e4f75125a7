/* test_stage.c - a worker's compute stage (worker/stage.h) on a whole tiny model
 * (embed + layers + head), driven without sockets:
 *   - a frame of two sequences whose second sample has invalid sampling values
 *     (NaN temperature, then top_p NaN) samples the first one as if alone and
 *     marks only the second with INVALID_ARGUMENT: the job itself does not fail,
 *     so the requests batched with a bad one are not lost;
 *   - the token of the good sequence equals the one from a frame where both
 *     samples are valid.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "baton.pb-c.h"
#include "forward.h"
#include "model.h"
#include "ops.h"
#include "stage.h"

#include "check.h"

static void on_wake(uv_async_t *a) { (void)a; }

/* Runs one frame of 2 slots x 3 tokens with sample 0 (slot 0) given `good` and
 * sample 1 (slot 1) given `other`; returns the finished job (the caller frees it). */
static stage_job *run_two(stage *s, uv_loop_t *loop, const Baton__SamplingParams *good,
                          const Baton__SamplingParams *other) {
    int32_t slots[6] = {0, 0, 0, 1, 1, 1}, pos[6] = {0, 1, 2, 0, 1, 2}, toks[6] = {5, 17, 99, 7, 300, 42};
    int32_t resets[2] = {0, 1};
    Baton__SampleSpec sp[2], *spp[2] = {&sp[0], &sp[1]};
    baton__sample_spec__init(&sp[0]);
    baton__sample_spec__init(&sp[1]);
    sp[0].index = 2, sp[0].sampling = (Baton__SamplingParams *)good;
    sp[1].index = 5, sp[1].sampling = (Baton__SamplingParams *)other;
    Baton__StageFrame f = BATON__STAGE_FRAME__INIT;
    f.step_id = 1;
    f.token_count = 6;
    f.n_slots = f.n_positions = f.n_tokens = 6;
    f.slots = slots, f.positions = pos, f.tokens = toks;
    f.n_samples = 2, f.samples = spp;
    f.n_reset_slots = 2, f.reset_slots = resets;
    size_t len = baton__stage_frame__get_packed_size(&f);
    uint8_t *buf = malloc(len + 1);
    baton__stage_frame__pack(&f, buf);
    stage_job *j = calloc(1, sizeof *j);
    j->kind = STAGE_JOB_FRAME;
    j->frame = baton__stage_frame__unpack(NULL, len, buf);
    free(buf);
    j->wire = malloc(1);
    j->out_codec = -1;
    stage_submit(s, j);
    stage_job *done = NULL;
    for (int k = 0; k < 20000 && !(done = stage_take_done(s)); k++) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(500);
    }
    return done;
}

int main(void) {
    const char *build = getenv("BATON_BUILD");
    if (!build) build = ".";
    char dir[] = "/tmp/test_stage_XXXXXX", cmd[1024], path[600], err[256];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(path, sizeof path, "%s/tiny.gguf", dir);
    snprintf(cmd, sizeof cmd, "%s/tools/baton-mkmodel --preset tiny --layers 2 --type q8_0 -o %s >/dev/null", build,
             path);
    CHECK(system(cmd) == 0, "%s", cmd);
    CHECK(kern_init(1) == 0, "kern_init");
    model *m = model_load(path, &(model_slice){0, -1, true, true}, err, sizeof err);
    CHECK(m != NULL, "model_load: %s", err);
    if (!m) return 1;
    kv_cache *kv = kv_cache_new(m, 2, 64, TENSOR_F16, err, sizeof err);
    CHECK(kv != NULL, "kv: %s", err);
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_async_t wake;
    uv_async_init(&loop, &wake, on_wake);
    stage *s = stage_new(m, kv, 16, &wake, err, sizeof err);
    CHECK(s != NULL, "stage_new: %s", err);
    if (!s) return 1;

    Baton__SamplingParams good = BATON__SAMPLING_PARAMS__INIT, bad_t = BATON__SAMPLING_PARAMS__INIT,
                          bad_p = BATON__SAMPLING_PARAMS__INIT, ok2 = BATON__SAMPLING_PARAMS__INIT;
    good.temperature = 0.8f, good.seed = 7;
    bad_t.temperature = NAN;
    bad_p.temperature = 1.0f, bad_p.top_p = NAN;
    ok2.temperature = 0;

    stage_job *ref = run_two(s, &loop, &good, &ok2);
    CHECK(ref && !ref->failed && ref->n_res == 2 && !ref->res_code[0] && !ref->res_code[1],
          "two valid samples: failed %d (%s)", ref ? ref->failed : -1, ref ? ref->err : "no job");
    const Baton__SamplingParams *bads[2] = {&bad_t, &bad_p};
    for (int b = 0; b < 2 && ref; b++) {
        stage_job *j = run_two(s, &loop, &good, bads[b]);
        CHECK(j && !j->failed, "bad sample %d failed the whole job: %s", b, j ? j->err : "no job");
        if (j && !j->failed) {
            CHECK(j->n_res == 2, "results: %zu", j->n_res);
            CHECK(j->res_code[0] == 0 && j->res_slot[0] == 0 && j->res_token[0] == ref->res_token[0],
                  "good slot: code %d token %d (alone %d)", (int)j->res_code[0], (int)j->res_token[0],
                  (int)ref->res_token[0]);
            CHECK(j->res_code[1] == BATON__STATUS_CODE__STATUS_INVALID_ARGUMENT && j->res_slot[1] == 1,
                  "bad slot %d: code %d", b, (int)j->res_code[1]);
        }
        stage_job_free(j);
    }
    stage_job_free(ref);
    stage_free(s);
    uv_close((uv_handle_t *)&wake, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    kv_cache_free(kv);
    model_free(m);
    kern_shutdown();
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "test_stage: could not remove %s\n", dir);
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
