/* proc.h - what this machine and process have, read from /proc. */
#ifndef BATON_PROC_H
#define BATON_PROC_H

#include <stdint.h>

uint64_t proc_peak_rss(void);     /* VmHWM of this process in bytes; 0 if unknown */
uint64_t proc_mem_available(void);/* MemAvailable of the machine in bytes; 0 if unknown */

#endif
