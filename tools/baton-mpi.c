/* baton-mpi - one launcher for every rank of an MPI job.
 *
 *     mpirun -np 3 baton-mpi --model m.gguf --listen 0.0.0.0:7000 [coordinator options]
 *            [--worker-OPTION VALUE ...]
 *
 * Reads its rank from the environment the launcher sets (OMPI_COMM_WORLD_RANK,
 * PMIX_RANK, PMI_RANK, SLURM_PROCID) and execs, in place, baton-coord --mpi on
 * rank 0 and baton-worker --mpi on the others, from the build or install tree
 * this binary sits in. --model, --cluster-id, --max-frame and --secret go to both;
 * --worker-X VALUE goes to the workers as --X VALUE (e.g. --worker-threads 2);
 * everything else goes to the coordinator. MPI itself starts in the exec'd
 * program, so this launcher makes no MPI call.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "net_mpi.h"

#define MAX_ARGS 256

/* Options both roles take, each with a value. */
static const char *const shared_opts[] = {"--model", "--cluster-id", "--max-frame", "--secret", NULL};
/* Worker options without a value (after --worker-). */
static const char *const worker_flags[] = {"--worker-help", NULL};

static bool in_list(const char *const *list, const char *s) {
    for (; *list; list++)
        if (!strcmp(*list, s)) return true;
    return false;
}

/* Path of a program next to this one: BUILD/tools/baton-mpi -> BUILD/DIR/NAME, or
 * an installed bin/NAME beside it. */
static void sibling(const char *dir, const char *name, char *out, size_t cap) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        snprintf(out, cap, "%s", name);
        return;
    }
    self[n] = 0;
    char *here = dirname(self);
    snprintf(out, cap, "%s/%s", here, name);
    if (access(out, X_OK) == 0) return;
    snprintf(out, cap, "%s/../%s/%s", here, dir, name);
}

int main(int argc, char **argv) {
    log_set_program("baton-mpi");
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: mpirun -np N baton-mpi --model FILE [--listen HOST:PORT] [coordinator options]\n"
               "       [--worker-OPTION VALUE ...]\n"
               "rank 0 runs baton-coord --mpi (clients connect to --listen, default 127.0.0.1:7000),\n"
               "ranks 1..N-1 run baton-worker --mpi; --worker-threads 2 passes --threads 2 to the workers.\n");
        return 0;
    }
    int rank = net_mpi_env_rank();
    if (rank < 0)
        log_exit(2, "no MPI rank in the environment (OMPI_COMM_WORLD_RANK, PMI_RANK, SLURM_PROCID): "
                    "start it with mpirun or srun");
    bool coord = rank == 0;
    char *args[MAX_ARGS];
    int n = 0;
    char prog[PATH_MAX];
    sibling(coord ? "coordinator" : "worker", coord ? "baton-coord" : "baton-worker", prog, sizeof prog);
    args[n++] = prog;
    args[n++] = "--mpi";
    bool has_listen = false;
    for (int i = 1; i < argc; i++) {
        if (n + 4 >= MAX_ARGS) log_exit(2, "too many arguments");
        const char *a = argv[i];
        bool has_value = i + 1 < argc && !in_list(worker_flags, a) && strncmp(argv[i + 1], "--", 2) != 0;
        if (in_list(shared_opts, a)) {
            args[n++] = argv[i];
            if (has_value) args[n++] = argv[++i];
        } else if (!strncmp(a, "--worker-", 9)) {
            if (!coord) {
                static char opt[MAX_ARGS][64];
                snprintf(opt[n], sizeof opt[n], "--%s", a + 9);
                args[n] = opt[n];
                n++;
            }
            if (has_value) {
                i++;
                if (!coord) args[n++] = argv[i];
            }
        } else if (coord) {
            if (!strcmp(a, "--listen")) has_listen = true;
            args[n++] = argv[i];
        } else if (has_value) {
            i++; /* a coordinator option's value */
        }
    }
    if (coord && !has_listen) {
        args[n++] = "--listen";
        args[n++] = "127.0.0.1:7000";
    }
    args[n] = NULL;
    execv(prog, args);
    log_msg("rank %d: cannot run %s: %s", rank, prog, strerror(errno));
    return 127;
}
