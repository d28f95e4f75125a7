/* gpu_device.c - the --device option's values, the same in every build. See gpu.h. */
#include <stdlib.h>
#include <string.h>

#include "gpu.h"

int gpu_parse_device(const char *s, int *index) {
    *index = 0;
    if (!s || !strcmp(s, "cpu")) return GPU_DEVICE_CPU;
    if (!strcmp(s, "list")) return GPU_DEVICE_LIST;
    if (!strcmp(s, "vulkan")) return GPU_DEVICE_VULKAN;
    if (!strncmp(s, "vulkan:", 7) && s[7] >= '0' && s[7] <= '9') {
        char *end;
        long n = strtol(s + 7, &end, 10);
        if (*end || n > 255) return -1;
        *index = (int)n;
        return GPU_DEVICE_VULKAN;
    }
    return -1;
}
