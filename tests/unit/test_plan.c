/* test_plan.c - the layer planner on cases small enough to check by hand. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "plan.h"

#include "check.h"

static void print_plan(const char *name, const plan_result *r) {
    printf("%s: bottleneck %.3f s;", name, r->bottleneck);
    for (int i = 0; i < r->n_stages; i++)
        printf(" node %d [%d,%d)%s%s", r->stages[i].node, r->stages[i].layer_begin, r->stages[i].layer_end,
               r->stages[i].embed ? "+E" : "", r->stages[i].head ? "+H" : "");
    printf("\n");
}

/* Checks the stages are [b0,e0),[b1,e1),... on the given nodes. */
static void expect(const char *name, const plan_result *r, int n, const int *node, const int *begin, const int *end) {
    CHECK(r->n_stages == n, "%s: %d stages, expected %d", name, r->n_stages, n);
    for (int i = 0; i < n && i < r->n_stages; i++) {
        CHECK(r->stages[i].node == node[i] && r->stages[i].layer_begin == begin[i] && r->stages[i].layer_end == end[i],
              "%s: stage %d is node %d [%d,%d), expected node %d [%d,%d)", name, i, r->stages[i].node,
              r->stages[i].layer_begin, r->stages[i].layer_end, node[i], begin[i], end[i]);
    }
    if (r->n_stages > 0) {
        CHECK(r->stages[0].embed && (r->n_stages == 1 || !r->stages[r->n_stages - 1].embed), "%s: embed on the first only", name);
        CHECK(r->stages[r->n_stages - 1].head, "%s: head on the last", name);
    }
}

int main(void) {
    uint64_t lb[8];
    for (int i = 0; i < 8; i++) lb[i] = 100;
    plan_model pm = {.n_layer = 8, .layer_bytes = lb, .kv_bytes_per_layer = 10};
    char err[256];
    plan_result r;

    /* Two equal nodes, plenty of memory: 4 + 4, bottleneck 4 layers x 1 s. */
    plan_node eq[2] = {{1 << 20, 1.0, 0}, {1 << 20, 1.0, 0}};
    CHECK(plan_layers(&pm, eq, 2, &r, err, sizeof err) == 0, "equal: %s", err);
    print_plan("equal", &r);
    expect("equal", &r, 2, (int[]){0, 1}, (int[]){0, 4}, (int[]){4, 8});
    CHECK(fabs(r.bottleneck - 4.0) < 1e-9, "equal: bottleneck %g, expected 4", r.bottleneck);
    CHECK(r.stages[0].bytes == 4 * 110, "equal: stage 0 bytes %llu, expected 440", (unsigned long long)r.stages[0].bytes);

    /* Node 1 three times as fast: 2 layers on node 0 (2 s), 6 on node 1 (6 x 1/3 = 2 s). */
    plan_node het[2] = {{1 << 20, 1.0, 0}, {1 << 20, 1.0 / 3, 0}};
    CHECK(plan_layers(&pm, het, 2, &r, err, sizeof err) == 0, "hetero: %s", err);
    print_plan("hetero", &r);
    expect("hetero", &r, 2, (int[]){0, 1}, (int[]){0, 2}, (int[]){2, 8});
    CHECK(fabs(r.bottleneck - 2.0) < 1e-9, "hetero: bottleneck %g, expected 2", r.bottleneck);

    /* The fast node can only hold 3 layers (3 x 110 = 330 <= 350 < 440): the rest go to the slow one. */
    plan_node mem[2] = {{1 << 20, 1.0, 0}, {350, 0.1, 0}};
    CHECK(plan_layers(&pm, mem, 2, &r, err, sizeof err) == 0, "memory: %s", err);
    print_plan("memory", &r);
    expect("memory", &r, 2, (int[]){0, 1}, (int[]){0, 5}, (int[]){5, 8});

    /* Head costs 2 layers: with 2 equal nodes, [0,5) = 5 s and [5,8)+head = 3 + 2 = 5 s. */
    pm.head_cost = 2.0;
    CHECK(plan_layers(&pm, eq, 2, &r, err, sizeof err) == 0, "head: %s", err);
    print_plan("head", &r);
    expect("head", &r, 2, (int[]){0, 1}, (int[]){0, 5}, (int[]){5, 8});
    CHECK(fabs(r.bottleneck - 5.0) < 1e-9, "head: bottleneck %g, expected 5", r.bottleneck);
    pm.head_cost = 0;

    /* A node too small for even one layer is skipped; the others share the work. */
    plan_node skip[3] = {{1 << 20, 1.0, 0}, {50, 1.0, 0}, {1 << 20, 1.0, 0}};
    CHECK(plan_layers(&pm, skip, 3, &r, err, sizeof err) == 0, "skip: %s", err);
    print_plan("skip", &r);
    expect("skip", &r, 2, (int[]){0, 2}, (int[]){0, 4}, (int[]){4, 8});

    /* Four equal nodes: 2 layers each. */
    plan_node four[4] = {{1 << 20, 1.0, 0}, {1 << 20, 1.0, 0}, {1 << 20, 1.0, 0}, {1 << 20, 1.0, 0}};
    CHECK(plan_layers(&pm, four, 4, &r, err, sizeof err) == 0, "four: %s", err);
    print_plan("four", &r);
    expect("four", &r, 4, (int[]){0, 1, 2, 3}, (int[]){0, 2, 4, 6}, (int[]){2, 4, 6, 8});

    /* Embeddings must sit with layer 0: node 0 has room for embed + 1 layer only. */
    pm.embed_bytes = 1000;
    plan_node emb[2] = {{1110, 1.0, 0}, {1 << 20, 1.0, 0}};
    CHECK(plan_layers(&pm, emb, 2, &r, err, sizeof err) == 0, "embed: %s", err);
    print_plan("embed", &r);
    expect("embed", &r, 2, (int[]){0, 1}, (int[]){0, 1}, (int[]){1, 8});
    pm.embed_bytes = 0;

    /* The output head sits with the last layer and counts against that node's memory:
     * node 1 holds 4 layers (440) but not 4 layers + head (1440); 3 + head = 1330 fit. */
    pm.head_bytes = 1000;
    plan_node headmem[2] = {{1 << 20, 1.0, 0}, {1330, 1.0, 0}};
    CHECK(plan_layers(&pm, headmem, 2, &r, err, sizeof err) == 0, "head memory: %s", err);
    print_plan("head memory", &r);
    expect("head memory", &r, 2, (int[]){0, 1}, (int[]){0, 5}, (int[]){5, 8});
    CHECK(r.n_stages == 2 && r.stages[1].bytes == 3 * 110 + 1000, "head memory: last stage bytes %llu, expected 1330",
          (unsigned long long)r.stages[r.n_stages - 1].bytes);
    /* Too small for the head with even one layer (110 + 1000 > 1000): node 0 takes everything. */
    headmem[1].mem_bytes = 1000;
    CHECK(plan_layers(&pm, headmem, 2, &r, err, sizeof err) == 0, "head memory, small: %s", err);
    print_plan("head memory, small", &r);
    expect("head memory, small", &r, 1, (int[]){0}, (int[]){0}, (int[]){8});
    pm.head_bytes = 0;

    /* Infeasible: 8 x 110 = 880 bytes over two nodes of 400. */
    plan_node tiny[2] = {{400, 1.0, 0}, {400, 1.0, 0}};
    CHECK(plan_layers(&pm, tiny, 2, &r, err, sizeof err) == -1, "infeasible: planned anyway");
    printf("infeasible: %s\n", err);
    CHECK(strstr(err, "no plan fits") != NULL, "infeasible: message '%s'", err);

    /* The node's own KV format: with f16 KV (10 per layer) 8 x 110 = 880 does not fit two
     * nodes of 440 x 2 - 1 = 439; with q8_0-sized KV (5 per layer, 105 x 4 = 420) it does. */
    pm.n_ctx = 64;
    pm.n_slots = 2;
    plan_node kvf16[2] = {{439, 1.0, 0}, {439, 1.0, 0}};
    CHECK(plan_layers(&pm, kvf16, 2, &r, err, sizeof err) == -1, "kv f16: planned anyway");
    printf("kv f16: %s\n", err);
    CHECK(strstr(err, "KV cache") && strstr(err, "2 slot(s) x 64 positions"), "kv f16: message '%s'", err);
    plan_node kvq8[2] = {{439, 1.0, 5}, {439, 1.0, 5}};
    CHECK(plan_layers(&pm, kvq8, 2, &r, err, sizeof err) == 0, "kv q8_0: %s", err);
    print_plan("kv q8_0", &r);
    expect("kv q8_0", &r, 2, (int[]){0, 1}, (int[]){0, 4}, (int[]){4, 8});
    CHECK(r.stages[0].bytes == 4 * 105, "kv q8_0: stage 0 bytes %llu, expected 420", (unsigned long long)r.stages[0].bytes);
    /* mixed: node 1 with f16 KV holds only 3 layers (330 <= 400 < 440), node 0 with q8_0 KV the other 5 (525) */
    plan_node kvmix[2] = {{600, 1.0, 5}, {400, 1.0, 10}};
    CHECK(plan_layers(&pm, kvmix, 2, &r, err, sizeof err) == 0, "kv mixed: %s", err);
    print_plan("kv mixed", &r);
    expect("kv mixed", &r, 2, (int[]){0, 1}, (int[]){0, 5}, (int[]){5, 8});
    pm.n_ctx = pm.n_slots = 0;

    /* No nodes, bad speed. */
    CHECK(plan_layers(&pm, tiny, 0, &r, err, sizeof err) == -1, "no nodes accepted");
    plan_node bad[1] = {{1 << 20, 0.0, 0}};
    CHECK(plan_layers(&pm, bad, 1, &r, err, sizeof err) == -1, "zero speed accepted");
    printf("bad speed: %s\n", err);

    printf(failures ? "test_plan: %d FAILURES\n" : "test_plan: all passed\n", failures);
    return failures ? 1 : 0;
}
