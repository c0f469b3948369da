/* SPDX-License-Identifier: MIT */
/**
 * @file sockkit.h
 * @brief Umbrella header: include this one to get all of libsockkit.
 */
#ifndef SOCKKIT_SOCKKIT_H
#define SOCKKIT_SOCKKIT_H

#include <sockkit/common.h>
#include <sockkit/version.h>
#include <sockkit/error.h>
#include <sockkit/addr.h>
#include <sockkit/socket.h>
#include <sockkit/io.h>
#include <sockkit/server.h>
#include <sockkit/backend.h>
#include <sockkit/timer.h>
#include <sockkit/loop.h>
#include <sockkit/tls.h>

#endif /* SOCKKIT_SOCKKIT_H */
