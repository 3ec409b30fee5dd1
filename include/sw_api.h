/* The admin API's names, shared by switchd (proxy/control.c) and switchctl
 * so that neither copies the other's strings. */
#ifndef SW_API_H
#define SW_API_H

#define SW_API_STATUS "/v1/status"
#define SW_API_CUTOVER "/v1/cutover"
#define SW_API_ABORT "/v1/abort"
#define SW_API_CHECK "/v1/check"
#define SW_API_ROLLBACK "/v1/rollback"
#define SW_API_COMMIT "/v1/commit"
#define SW_API_EVENTS "/v1/events"
#define SW_API_METRICS "/metrics"
#define SW_API_HOLD "/v1/hold"
#define SW_API_RELEASE "/v1/release"
#define SW_API_MIGRATED "/v1/migrated"

/* switchctl's exit codes (documented in its --help and man page). */
#define SW_EXIT_OK 0           /* done */
#define SW_EXIT_USAGE 1        /* bad command line */
#define SW_EXIT_UNREACHABLE 2  /* no switchd answered on the socket */
#define SW_EXIT_REFUSED 3      /* switchd refused (409, 403, 401, 400) */
#define SW_EXIT_GATE_FAILED 4  /* the gate's own checks said no */
#define SW_EXIT_INCONCLUSIVE 5 /* the gate ended without an answer */
#define SW_EXIT_TIMEOUT 6      /* --timeout passed before the end */
#define SW_EXIT_ROLLED_BACK 7  /* the cutover was rolled back (or blocked) */

#endif
