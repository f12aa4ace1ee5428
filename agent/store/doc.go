// Package store is strata's replicated row store: one per tier, on one bbolt
// file.
//
// A row is kept field by field (the top-level fields of its table's protobuf
// message, as wire bytes), each field with the stamp of the write that set
// it, plus a causal length that makes deletes and re-inserts mergeable. The
// merge of two row states (Merge) is a pure function and a join: replicas
// that exchange all their changes converge to identical rows, whatever the
// order of delivery.
//
// The store is unaware of contracts: callers (the HTTP API, gossip) decode
// and validate messages first and hand the store field bytes.
//
// Layout of the pieces:
//
//   - row.go: stamps, rows, Merge and the canonical row encoding (pure);
//   - digest.go: the hash tree over key buckets for anti-entropy (pure);
//   - store.go: opening the bbolt file, reads and listing;
//   - commit.go: the group-commit loop through which every write goes;
//   - feed.go: the bounded, persisted change feed behind watch streams.
//
// # Durability
//
// A write is acknowledged only after the bbolt transaction holding it has
// committed, and bbolt commits with fsync. Writers do not each pay for an
// fsync: one goroutine commits, and every write queued while a commit is in
// flight goes into the next transaction (group commit).
package store
