/* stage.h - the compute side of a worker: one thread that turns stage frames into
 * output frames (or sampled tokens on the last stage), in arrival order.
 *
 * The network thread submits jobs; the compute thread decodes their payload
 * (hop.h), runs forward_run (its kernels use the kernel thread pool), encodes the
 * output for the successor, and pushes finished jobs on a done list, then wakes
 * the network thread through a uv_async. Network code never computes (not even
 * the codecs); compute code never touches sockets: they meet in these two queues.
 *
 *     stage *s = stage_new(m, kv, max_batch, &async, err, n);
 *     stage_submit(s, job);              // network thread
 *     while ((job = stage_take_done(s))) ... send, stage_job_free(job);
 */
#ifndef BATON_WORKER_STAGE_H
#define BATON_WORKER_STAGE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "baton.pb-c.h"
#include "forward.h"
#include "hop.h"

typedef enum stage_job_kind {
    STAGE_JOB_FRAME = 0, /* run a StageFrame */
    STAGE_JOB_DROP = 1,  /* free slots */
} stage_job_kind;

typedef struct stage_job {
    stage_job_kind kind;
    Baton__StageFrame *frame;   /* FRAME: unpacked header (owned) */
    uint8_t *wire;              /* FRAME: the payload as it arrived, decoded on the compute thread (owned) */
    size_t wire_len;
    char source[64];            /* FRAME: who sent it, for the log */
    int out_codec;              /* FRAME: codec of the output to the successor; -1: none (head) */
    hop_payload out;            /* FRAME: the encoded output, ready to send */
    float *hidden;              /* FRAME: [n][n_embd] in, then out (owned) */
    size_t hidden_len;          /* bytes */
    int32_t *drop_slots;        /* DROP: slots to free (owned) */
    size_t n_drop;
    /* results of a head stage: one per SampleSpec */
    int32_t *res_slot, *res_token;
    int32_t *res_pos;                 /* > 0: a score of the prompt token at that position, not a sample */
    float *res_logprob;
    int32_t *res_code;          /* per result: 0, or the status ending that slot's request (invalid sampling) */
    size_t n_res;
    int failed;                 /* 1: err says why, code the status (INTERNAL, or DATA_LOSS: the payload
                                   from `source` is not what was sent) */
    int code;
    char err[256];
    struct stage_job *next;
} stage_job;

typedef struct stage stage;

/* Starts the compute thread over a loaded slice. The stage does not own m or kv.
 * `wake` is signalled after every finished job. NULL with a message on error. */
stage *stage_new(model *m, kv_cache *kv, int32_t max_batch, uv_async_t *wake, char *err, size_t errlen);
/* Stops the thread after the queued jobs, frees what the stage owns. */
void stage_free(stage *s);

void stage_submit(stage *s, stage_job *job);     /* takes ownership */
stage_job *stage_take_done(stage *s);            /* NULL when none */
size_t stage_pending(stage *s);                  /* submitted, not yet taken back */
/* Slots holding a sequence and positions filled, as of the last finished job. */
void stage_usage(stage *s, uint32_t *slots_used, uint64_t *positions);
/* Microseconds the compute thread has spent running jobs since stage_new. */
uint64_t stage_busy_us(stage *s);

void stage_job_free(stage_job *job);             /* accepts NULL */

#endif
