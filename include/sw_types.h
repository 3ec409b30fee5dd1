/* Types shared by several modules of switchd and by switchctl. Types only:
 * no functions, so that any header may include this one without cycles. */
#ifndef SW_TYPES_H
#define SW_TYPES_H

#include <stddef.h>
#include <stdint.h>

/* The two colours of a blue-green deploy. */
typedef enum sw_colour_e {
  SW_BLUE = 0,
  SW_GREEN = 1,
} sw_colour_t;

#define SW_COLOURS 2

/* Project error codes, below libuv's so that one int carries either. */
#define SW_ECONFIG (-4300) /* the configuration is invalid */
#define SW_EPARSE (-4301)  /* a peer sent a message we refuse to parse */
#define SW_ELIMIT (-4302)  /* a bound was reached */

#define SW_VERSION "0.1.0"

#endif
