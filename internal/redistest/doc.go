// Package redistest starts a private redis-server for a test.
//
// Every test gets a server of its own on a free loopback port with its data
// in t.TempDir(), stopped on cleanup; tests never touch a Redis they did not
// start. When SYNCD_TEST_REDIS_URL is set, that server is used instead and
// isolation comes from a unique key prefix per test (Server.Prefix):
// nothing here ever flushes a database. Without redis-server on the PATH
// the test fails with an install hint.
//
// Fault tests take a server of their own with StartPrivate, whatever the
// environment says, and may then kill it (Kill), bring it back from its
// data (Restart, with AppendOnly for an fsynced append-only file) or stall
// it (Pause): never done to a server others use. StartReplica adds a
// replica of such a server; Freeze stops a server's process (a replica
// then acknowledges nothing) until thawed. With TLS the private
// server speaks only TLS, with a throwaway CA and a client certificate
// it requires (Server.CAFile, CertFile, KeyFile).
//
// StartCluster starts a Redis Cluster of the test's own (three masters,
// a replica each, created by redis-cli --cluster create) and can fail a
// master over to its replica (Cluster.Failover).
//
// StartSentinel starts a master, a replica and three sentinels, all
// private, and returns their redis-sentinel:// URL; Failover (SENTINEL
// FAILOVER) and KillMaster (SIGKILL) fail the master over and return once
// the sentinels agree on the promoted one.
//
// It does not hold fixtures or test data: each test writes its own keys,
// under its prefix, through the code under test.
package redistest
