// File: shared_redis_server.h
//
// One redis-server for a whole test process: a GoogleTest environment starts it before the first
// test and stops it after the last, so the tests of a binary share it (each in a budget domain of
// its own) instead of each paying a start.
//
// Thread-safety: SharedRedisServer may be called from any test thread; the server itself is driven
// by one thread at a time (redis_server.h).
//
// Errors: a server that does not start fails the environment's SetUp, which fails every test.

#ifndef ROUTER_TESTS_SERVER_LEDGER_REDIS_SHARED_REDIS_SERVER_H_
#define ROUTER_TESTS_SERVER_LEDGER_REDIS_SHARED_REDIS_SERVER_H_

#include "gtest/gtest.h"
#include "tests/server/ledger_redis/redis_server.h"

namespace router::testing {

// Registers the environment that starts the server with `options`. Call once per test binary,
// from a namespace-scope initializer.
::testing::Environment* AddSharedRedisServer(const RedisServerOptions& options);

// The server the environment started; valid while tests run.
RedisServer& SharedRedisServer();

}  // namespace router::testing

#endif  // ROUTER_TESTS_SERVER_LEDGER_REDIS_SHARED_REDIS_SERVER_H_
