// Package cluster replicates one tier's store across its nodes with
// hashicorp/memberlist: membership and failure detection, eager push of
// every committed change over streams with lazy repair, and digest-driven
// anti-entropy.
//
// One Tier runs per tier of an agent: the regional tier (LAN settings,
// label strata/<cluster>/regional/<region>) and, on gateways, the global
// tier (WAN settings, label strata/<cluster>/global). Each has its own bind
// port and keyring, so a node of another region, cluster or key can neither
// join nor inject packets.
//
// Layout:
//
//   - message.go: the wire formats of gossip and sync messages (pure, fuzzed;
//     a bad item refuses that item, not its message);
//   - tier.go: memberlist setup, the delegate, inbound processing, members;
//   - push.go, push_msg.go: the push path (eager push over streams on a
//     plumtree overlay, see package plumtree) and its wire format;
//   - version.go: protocol versions in node meta, refusal at join;
//   - broadcast_metrics.go: how changes arrived, what the push path did;
//   - inbox.go: the byte bound on received messages, the bounded log-once set;
//   - antientropy.go: the decisions of an exchange, pure functions of a
//     digest or keys and the peer's message (scenario-tested without sockets);
//   - sync.go: anti-entropy I/O: reads the store, sends what antientropy.go decides;
//   - ready.go: catch-up as a node joins, and Ready;
//   - statetransfer.go: full state transfer for a node away longer than
//     the tombstone TTL;
//   - streampush.go: changes too large for gossip, streamed to a few peers
//     by a fixed set of workers from a bounded queue;
//   - peers.go: known peers persisted for rejoin after restart;
//   - keyring.go, keys.go: key files (private, replaced durably) and rotation;
//   - atomicfile.go: durable file replacement (write, fsync, rename, fsync dir);
//   - faultnet.go: a fault-injecting memberlist transport for tests.
//
// # Replication
//
// A local committed change is pushed, in batches over memberlist streams
// (labelled and encrypted with the tier key), to a few eager peers, which
// forward what they had not seen to theirs; duplicates prune links, so the
// eager links form a tree. Lazy peers get compact announcements (the
// highest sequence number seen from each origin) and ask for ranges they
// lack; a range no peer holds any more is left to anti-entropy. Peers
// whose node meta does not advertise the push protocol get the change by
// memberlist gossip, as before (a TransmitLimitedQueue; a change too large
// for a packet goes over a stream to a few random peers). docs/BROADCAST.md
// describes the design.
//
// Anti-entropy is the last resort: every sync interval a node compares its
// digest with a random peer's, descends only into differing branches and
// leaves, and ships only the rows whose hashes differ, both ways.
//
// # Catch-up
//
// A node that joins runs an exchange with a peer at once and reports
// Ready only when one has finished (a node alone is ready at once);
// members run an exchange with each member that joins. So a restarted node
// holds what it missed when it reports ready, instead of after its next
// sync interval. A node whose last exchange is older than the tombstone
// TTL cannot be reconciled that way (peers have reaped the tombstones of
// what was deleted meanwhile): it replaces its store with a fresh peer's
// snapshot instead, keeping and re-broadcasting the writes it acknowledged
// since (statetransfer.go).
package cluster
