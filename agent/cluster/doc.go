// Package cluster replicates one tier's store across its nodes with
// hashicorp/memberlist: membership and failure detection, gossip broadcast
// of every committed change, and digest-driven anti-entropy.
//
// One Tier runs per tier of an agent: the regional tier (LAN settings,
// label strata/<cluster>/regional/<region>) and, on gateways, the global
// tier (WAN settings, label strata/<cluster>/global). Each has its own bind
// port and keyring, so a node of another region, cluster or key can neither
// join nor inject packets.
//
// Layout:
//
//   - message.go: the wire formats of gossip and sync messages (pure, fuzzed);
//   - tier.go: memberlist setup, the delegate, inbound processing, members;
//   - broadcast.go: the bounded broadcast queue;
//   - sync.go: anti-entropy: digest, leaves, keys, rows;
//   - peers.go: known peers persisted for rejoin after restart;
//   - faultnet.go: a fault-injecting memberlist transport for tests.
//
// # Replication
//
// A committed change (local, or remote and new to this node) is queued on a
// memberlist TransmitLimitedQueue, so it reaches every node through a few
// hops of gossip; a change too large for one packet is sent over a stream to
// a few random peers instead. Messages lost to the network or to a full
// queue are repaired by anti-entropy: every sync interval a node compares
// its digest with a random peer's, descends only into differing branches and
// leaves, and ships only the rows whose hashes differ, both ways.
package cluster
