/* The cutover driver: the I/O around the pure switch machine. It feeds the
 * machine with health results, verifications and in-flight counts, carries
 * out what the machine decides (verify, probe, flip, cancel a drain, write
 * the state file), and serves the admin API and the metrics. The data path
 * never waits on it: a flip is the assignment of sw.live. */
#ifndef SW_CONTROL_H
#define SW_CONTROL_H

#include <stddef.h>

#include "sw_proxy.h"

/* Restores the state file (which names the live colour) and starts the
 * machine and the admin API. Returns 0, or an error with "what: why" in
 * err (a corrupt state file names the file). */
int sw_control_start(char *err, size_t errlen);
/* A reload has been applied: new parameters, and a `live` changed in the
 * file switches at once when no cutover is running. */
void sw_control_reload(const sw_config_t *old_cfg);
/* At shutdown: stops timers, verifications and the admin API. */
void sw_control_stop(void);
/* One health probe of a server finished. */
void sw_control_health(sw_server_t *s, const sw_health_result_t *r);
/* One exchange ended (for the metrics). */
void sw_control_observe(const sw_req_t *r);
/* An exchange left server s (called by upstream.c, deep in the data path:
 * it only schedules work for the loop). */
void sw_control_unbound(const sw_server_t *s);

#endif
