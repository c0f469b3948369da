/* SPDX-License-Identifier: MIT */
#ifndef SK_TEST_POLL_BACKEND_H
#define SK_TEST_POLL_BACKEND_H

#include <sockkit/sockkit.h>

/* Register the "poll-test" backend (idempotent): 0 or a negative code. */
int poll_backend_register(void);

#endif
