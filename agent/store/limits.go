package store

// Size limits shared by every layer that takes a table name or a key from
// outside: the HTTP API refuses longer ones with a 400, the store refuses
// them before a mutation joins a commit group, and every gossip and sync
// decoder refuses the item that carries one (and only that item). Keeping
// one definition means a key the API accepted is a key every peer accepts.
const (
	// MaxTableLen is the longest table or record name, in bytes.
	MaxTableLen = 256
	// MaxKeyLen is the longest row or record key, in bytes. bbolt allows
	// 32 KiB keys; 4 KiB is the limit peers have always decoded, so
	// agents of earlier releases accept every key a newer one sends.
	MaxKeyLen = 4096
)
