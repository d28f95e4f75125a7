/* proc.c - see proc.h. */
#include "proc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value in kB of the line starting with `key` in a /proc file, in bytes; 0 if absent. */
static uint64_t proc_kb_field(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[256];
    size_t kl = strlen(key);
    uint64_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl)) kb = strtoull(line + kl, NULL, 10);
    fclose(f);
    return kb * 1024;
}

uint64_t proc_peak_rss(void) { return proc_kb_field("/proc/self/status", "VmHWM:"); }
uint64_t proc_mem_available(void) { return proc_kb_field("/proc/meminfo", "MemAvailable:"); }
