// Package global owns the global tier's data: how a region's record is laid
// out in the global store, how it is signed with the region's key, and the
// one write path every global write takes, whoever makes it.
//
// # Layout
//
// A record of type T owned by region R under key K is the row K' = "R/K"
// of table T in the global store (StoreKey). The row holds two fields:
// field 1 the record's protobuf encoding (empty once the record is
// deleted), field 2 the proof that region R wrote it (a signature by R's
// key, see Proof). Both fields are written together with one stamp, so
// last-writer-wins keeps them paired. A delete is a write of an empty value
// with its own proof: a bare store tombstone could not carry a signature,
// so it would let any node delete any region's records. The global store
// reaps such deletes after tombstone_ttl as it reaps tombstones
// (DeletedRow is its store.Options.Deleted). Region heartbeats
// use the same layout in HeartbeatTable, under key R, with the publishing
// node's name as the value.
//
// Record is the one Go type of this layout; FromRow and Stored.Change
// convert between a stored record and its row.
//
// # One write path
//
// Every global write but a region heartbeat, from a reducer's run, from
// the API or received from a peer, passes Batch.Check: leak values (collected from the reducer's
// input rows) → ownership (the writer's region owns the record) → count
// budget (max_per_region) → rate budget (per region and record type) →
// contracts.CheckWrite. Batch is pure: it reads its holdings through the
// Holdings interface and the time from its caller. Writer wraps it with
// the store: it signs and applies local writes, and checks (Writer.Accept)
// every change a peer sends, after verifying its proof, before the store
// merges it. Its holdings come from an index of each region's live
// records, listed once and then kept up to date from the store's change
// feed, so a write reads only its own record's row. Local writes of one
// record run one after the other; writes of other records are checked and
// committed alongside, each counting the records the others in flight add
// (Writer.Write).
//
// # Region identity
//
// Each region has an Ed25519 key (Signer); every gateway has the regions'
// public keys (Trust). A change is accepted only if its proof verifies
// under a key trusted for the region that owns it. Signing one Ed25519
// signature per record would cost some 50 µs per record to verify, so
// writes are signed in batches: the signature covers the root of a Merkle
// tree over the batch's records, and each record carries the path from its
// leaf to the root. A receiver checks each record's whole proof; it keeps
// the trees it has proven, so a record of a known batch costs about two
// hashes and a comparison of the rest of its path (see Verifier).
package global
