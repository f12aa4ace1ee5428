package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/strata-state/strata/agent/hlc"
)

// Errors returned by the store.
var (
	// ErrNotFound is returned for a row that does not exist or was deleted.
	ErrNotFound = errors.New("store: row not found")
	// ErrClosed is returned by calls on a closed store.
	ErrClosed = errors.New("store: closed")
	// ErrUnconfirmed: the caller stopped waiting (its context ended) after
	// the write reached the commit loop, which will still commit or fail
	// it; whether it was applied is unknown to the caller.
	ErrUnconfirmed = errors.New("store: the write was queued but not confirmed in time; it may still be applied")
	// ErrLocked is returned by Open when another process holds the file.
	ErrLocked = errors.New("store: data file is locked by another process")
	// ErrFeedTrimmed is returned by FeedSince when the requested position
	// is older than the oldest retained change.
	ErrFeedTrimmed = errors.New("store: change feed position no longer retained")
	// ErrInvalid is returned for a malformed mutation.
	ErrInvalid = errors.New("store: invalid mutation")
	// ErrStale is the rejection of a remote change for a row this store
	// does not hold, stamped before its tombstone horizon: the row may have
	// been deleted and its tombstone reaped, so accepting it could bring a
	// deleted row back.
	ErrStale = errors.New("store: change older than the tombstone horizon")
)

// NotFoundError names the row that was not found. It matches ErrNotFound.
type NotFoundError struct{ Table, Key string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("store: %s/%s: row not found", e.Table, e.Key)
}

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// bbolt buckets and meta keys.
var (
	bucketRows    = []byte("rows")   // nested bucket per table: key → encoded Row
	bucketFeed    = []byte("feed")   // seq (uint64 BE) → encoded Event
	bucketDigest  = []byte("digest") // leaf (uint16 BE) → Hash
	bucketMeta    = []byte("meta")
	metaFormat    = []byte("format")     // storeFormat as uvarint
	metaSeq       = []byte("seq")        // last committed feed seq, uint64 BE
	metaCount     = []byte("count\x00")  // + table: alive rows, uint64 BE
	metaReaped    = []byte("reaped")     // tombstones stamped before this HLC are gone, uint64 BE
	metaSynced    = []byte("synced")     // unix ms of the last completed anti-entropy exchange
	metaSyncedHLC = []byte("synced_hlc") // the store's clock then, uint64 BE
	metaDigestSeq = []byte("digestseq")  // the feed seq the persisted digest reflects
)

// Defaults for Options.
const (
	DefaultFeedRetention = 100_000
	DefaultMaxBatch      = 50_000
	// DefaultInitialMmapSize is the address space mapped at open (64-bit
	// platforms; 32-bit ones keep bbolt's own growth). bbolt remaps its
	// file when it outgrows the mapping, and a remap waits for every open
	// read transaction; mapping 1 GiB up front means a store under 1 GiB
	// never remaps, so a slow reader cannot stall commits that way. It
	// reserves address space only: memory is used as pages are touched,
	// and the file still grows with the data.
	DefaultInitialMmapSize = 1 << 30
)

// Options configure a Store.
type Options struct {
	// Node is the name of this node, hashed into the stamps of local writes.
	Node string
	// Clock stamps local writes and guards remote ones against drift.
	// Required.
	Clock *hlc.Clock
	// FeedRetention is how many change-feed events are kept for watchers
	// that resume. Default DefaultFeedRetention.
	FeedRetention int
	// MaxBatch bounds the mutations and changes one transaction carries.
	// Default DefaultMaxBatch.
	MaxBatch int
	// InitialMmapSize is how many bytes of address space to map at open
	// (see DefaultInitialMmapSize, the default). Negative: bbolt's own
	// growth from a small mapping (tests that need remaps use it).
	InitialMmapSize int
	// RefuseEmpty makes Open fail on an existing, empty file instead of
	// starting an empty store in it. The caller sets it when it knows the
	// store has committed before (the node's other files exist): an empty
	// file is then a truncated one, and starting empty would silently drop
	// every row this node acknowledged.
	RefuseEmpty bool
	// NoSync skips fsync on commit. Only for tests that do not exercise
	// durability: with it, acknowledged writes can be lost on a crash.
	NoSync bool
	// OnCommit, when set, is called after each committed transaction with
	// the changes it made: the deltas of local writes and the remote
	// changes that were new. It runs on the commit goroutine, so it must
	// not block and must not call back into the store's write methods.
	// The changes must not be modified. A replication layer subscribes
	// instead (Subscribe), which never holds the commit loop; the hook
	// is for instrumentation and for tests that hold the loop on purpose.
	OnCommit func(local, remote []Change)
	// Deleted, when set, reports whether a live row (odd causal length)
	// of table stands for a deleted entry: the global tier's deletes are
	// signed writes of an empty value, since a bare tombstone could carry
	// no signature. Reap removes such rows past the horizon as it removes
	// tombstones. It must be a pure function of its arguments.
	Deleted func(table string, row Row) bool
}

// Change is a delta for one row: the part of the row's state a write
// produced. Merging it into any replica's row brings in that write.
type Change struct {
	Table string
	Key   string
	Row   Row
}

// Store is a replicated row store on one bbolt file. It is safe for
// concurrent use. Writes go through one commit goroutine; reads use bbolt
// read transactions and never wait for writes.
type Store struct {
	txLeaves *[Leaves]Hash // the leaf deltas of the running transaction (commit loop only)

	db    *bolt.DB
	path  string
	node  NodeID
	clock *hlc.Clock
	opts  Options

	reqs     chan *request
	closing  chan struct{}
	loopDone chan struct{}
	closeMu  sync.Mutex
	closed   bool

	mu       sync.RWMutex // guards the fields below
	digest   Digest
	seq      uint64 // last committed feed sequence number
	firstSeq uint64 // oldest retained feed sequence number (seq+1 when empty)
	counts   map[string]int64
	changed  chan struct{} // closed and replaced on every commit

	commits     uint64
	commitTime  time.Duration
	rowsWritten uint64
	reaped      hlc.Timestamp // tombstone horizon (guarded by mu)

	// Digest checkpoints; owned by the commit loop.
	unsaved      map[int]bool // leaves changed since the last checkpoint
	checkpointed time.Time

	onCommit atomic.Pointer[func(local, remote []Change)]
	subsMu   sync.Mutex
	subs     []*Subscription
	synced   atomic.Int64 // unix ms of the last completed exchange (0: never); mirrors metaSynced
	// lastCommit is when the commit loop last completed a commit, in
	// unix nanoseconds (CommitStall).
	lastCommit atomic.Int64

	waiting waiters // writers waiting for the commit loop
	health  health  // what keeps the store from taking writes
}

// Open opens or creates the store file at path.
func Open(path string, opts Options) (*Store, error) {
	if opts.Clock == nil {
		return nil, errors.New("store: Options.Clock is required")
	}
	if opts.FeedRetention <= 0 {
		opts.FeedRetention = DefaultFeedRetention
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.InitialMmapSize == 0 && strconv.IntSize == 64 {
		opts.InitialMmapSize = DefaultInitialMmapSize
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() == 0 && opts.RefuseEmpty {
		return nil, fmt.Errorf("%w: data file %s is empty, but this node has written data before (its other files exist): "+
			"the file was truncated; restore it with `strata restore`, or remove it to rejoin empty and catch up from peers", ErrCorrupt, path)
	}
	db, err := openBolt(path, opts, false)
	var readOnly error
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		// The file cannot be opened for writing: serve it read-only.
		readOnly = fmt.Errorf("%w: %s cannot be opened for writing (%v): reads are served, writes refused; "+
			"make the file and its directory writable and restart", ErrReadOnly, path, err)
		db, err = openBolt(path, opts, true)
	}
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s (is another strata agent running with this data_dir?)", ErrLocked, path)
	case errors.As(err, new(*DamageError)):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("store: open %s: %w (if the file is damaged, restore it with `strata restore` or move it aside to rejoin empty)", path, err)
	}
	s := &Store{
		db:       db,
		path:     path,
		node:     NodeIDOf(opts.Node),
		clock:    opts.Clock,
		opts:     opts,
		reqs:     make(chan *request),
		closing:  make(chan struct{}),
		loopDone: make(chan struct{}),
		counts:   map[string]int64{},
		changed:  make(chan struct{}),
		unsaved:  map[int]bool{},
		waiting:  waiters{since: map[uint64]time.Time{}},
	}
	s.health.readOnly = readOnly
	if opts.OnCommit != nil {
		s.SetOnCommit(opts.OnCommit)
	}
	if err := s.load(); err != nil {
		db.Close()
		if errors.As(err, new(*DamageError)) {
			return nil, err
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	go s.run()
	return s, nil
}

// openBolt opens the bbolt file through guard: a truncated or damaged file
// makes bbolt panic or fault inside Open, and the file it opened is then
// closed here, since bbolt cannot.
func openBolt(path string, opts Options, readOnly bool) (*bolt.DB, error) {
	var file *os.File
	var db *bolt.DB
	err := guard(path, func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{
			Timeout:         time.Second,
			NoSync:          opts.NoSync,
			FreelistType:    bolt.FreelistMapType,
			InitialMmapSize: max(opts.InitialMmapSize, 0),
			ReadOnly:        readOnly,
			OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
				f, err := os.OpenFile(name, flag, perm)
				file = f
				return f, err
			},
		})
		return err
	})
	if errors.As(err, new(*DamageError)) && file != nil {
		file.Close()
	}
	return db, err
}

// loaded is what load reads from the file before deciding whether it must
// write.
type loaded struct {
	fresh         bool // no buckets yet
	format        uint64
	rebuiltDigest bool // the persisted digest was behind the rows
}

// load reads the feed position, counters and digest, then writes only if
// the file needs it (a new file's buckets, a format migration, a digest
// rebuilt after an unclean stop). A file that needs no write opens even on
// a full disk or read-only; one whose digest could not be saved works with
// the digest in memory and saves it at the next commit.
func (s *Store) load() error {
	var l loaded
	err := s.view(func(tx *bolt.Tx) error { return s.read(tx, &l) })
	if err != nil {
		return err
	}
	if l.format > storeFormat {
		return fmt.Errorf("data format %d is newer than this strata's (format %d): run a strata release that reads format %d, "+
			"or restore a backup taken by this release", l.format, storeFormat, l.format)
	}
	needsWrite := l.fresh || l.format < storeFormat || l.rebuiltDigest
	if !needsWrite {
		return nil
	}
	if s.health.readOnly != nil {
		if l.fresh || l.format < storeFormat {
			return fmt.Errorf("%w (and a new or older-format file needs a write to open)", s.health.readOnly)
		}
		s.markAllUnsaved()
		return nil
	}
	if l.format < storeFormat && !l.fresh {
		if err := s.backupBeforeMigration(l.format); err != nil {
			return err
		}
	}
	err = s.update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketRows, bucketFeed, bucketDigest, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if !l.fresh {
			// In the same transaction as the new format version: a
			// crash leaves the file in its old format, whole.
			if err := migrate(tx, l.format); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketMeta).Put(metaFormat, binary.AppendUvarint(nil, storeFormat)); err != nil {
			return err
		}
		if l.rebuiltDigest {
			return s.saveWholeDigest(tx)
		}
		return nil
	})
	if err != nil && isDiskFull(err) && !l.fresh && l.format == storeFormat {
		// Opened on a full disk: serve reads; writes report the disk.
		s.markAllUnsaved()
		return nil
	}
	return err
}

// markAllUnsaved makes the next commit checkpoint every digest leaf.
func (s *Store) markAllUnsaved() {
	for leaf := range Leaves {
		s.unsaved[leaf] = true
	}
}

// read loads the in-memory state from the file without writing.
func (s *Store) read(tx *bolt.Tx, l *loaded) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		l.fresh, l.format = true, storeFormat
		return nil
	}
	for _, name := range [][]byte{bucketRows, bucketFeed, bucketDigest} {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("%w: bucket %q missing", ErrCorrupt, name)
		}
	}
	if v := meta.Get(metaFormat); v != nil {
		f, n := binary.Uvarint(v)
		if n <= 0 {
			return fmt.Errorf("%w: unreadable format version", ErrCorrupt)
		}
		l.format = f
	} // else format 0: a file from before the version was recorded
	if l.format > storeFormat {
		return nil
	}
	if v := meta.Get(metaSeq); len(v) == 8 {
		s.seq = binary.BigEndian.Uint64(v)
	}
	if v := meta.Get(metaReaped); len(v) == 8 {
		s.reaped = hlc.Timestamp(binary.BigEndian.Uint64(v))
	}
	if v := meta.Get(metaSynced); len(v) == 8 {
		s.synced.Store(int64(binary.BigEndian.Uint64(v)))
	}
	s.firstSeq = s.seq + 1
	if k, _ := tx.Bucket(bucketFeed).Cursor().First(); len(k) == 8 {
		s.firstSeq = binary.BigEndian.Uint64(k)
	}
	c := meta.Cursor()
	for k, v := c.Seek(metaCount); k != nil && bytes.HasPrefix(k, metaCount); k, v = c.Next() {
		if len(v) == 8 {
			s.counts[string(k[len(metaCount):])] = int64(binary.BigEndian.Uint64(v))
		}
	}
	var digestSeq uint64
	if v := meta.Get(metaDigestSeq); len(v) == 8 {
		digestSeq = binary.BigEndian.Uint64(v)
	}
	if digestSeq != s.seq {
		l.rebuiltDigest = true
		return s.computeDigest(tx)
	}
	return tx.Bucket(bucketDigest).ForEach(func(k, v []byte) error {
		if len(k) != 2 || len(v) != len(Hash{}) || int(binary.BigEndian.Uint16(k)) >= Leaves {
			return fmt.Errorf("%w: digest entry", ErrCorrupt)
		}
		var h Hash
		copy(h[:], v)
		s.digest.SetLeaf(int(binary.BigEndian.Uint16(k)), h)
		return nil
	})
}

// computeDigest recomputes the digest from every row, after a stop that
// left the persisted digest behind the rows.
func (s *Store) computeDigest(tx *bolt.Tx) error {
	s.digest = Digest{}
	rows := tx.Bucket(bucketRows)
	return rows.ForEachBucket(func(table []byte) error {
		t := string(table)
		return rows.Bucket(table).ForEach(func(k, v []byte) error {
			s.digest.Update(LeafOf(t, string(k)), Hash{}, RowHash(t, string(k), v))
			return nil
		})
	})
}

// saveWholeDigest replaces the persisted digest with the in-memory one.
func (s *Store) saveWholeDigest(tx *bolt.Tx) error {
	if err := tx.DeleteBucket(bucketDigest); err != nil {
		return err
	}
	digest, err := tx.CreateBucket(bucketDigest)
	if err != nil {
		return err
	}
	for leaf := 0; leaf < Leaves; leaf++ {
		if h := s.digest.Leaf(leaf); !h.IsZero() {
			if err := digest.Put(binary.BigEndian.AppendUint16(nil, uint16(leaf)), bytes.Clone(h[:])); err != nil {
				return err
			}
		}
	}
	return tx.Bucket(bucketMeta).Put(metaDigestSeq, seqKey(s.seq))
}

// Close stops the commit loop, waits for writes in flight, and closes the
// file. Later calls return ErrClosed.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.closeMu.Unlock()
	// Checkpoint the digest, so the next open need not rebuild it.
	if s.refusesWrites() == nil {
		s.submit(context.Background(), &request{flush: true})
	}
	close(s.closing)
	<-s.loopDone
	return s.db.Close()
}

// SetOnCommit replaces the OnCommit hook (see Options.OnCommit); nil
// removes it. It lets a replication layer built after the store attach
// itself.
func (s *Store) SetOnCommit(fn func(local, remote []Change)) {
	if fn == nil {
		s.onCommit.Store(nil)
		return
	}
	s.onCommit.Store(&fn)
}

// MarkSynced records that an anti-entropy exchange completed at t. A node
// whose last exchange is older than the tombstone TTL must not rejoin with
// its old rows (see LastSynced).
func (s *Store) MarkSynced(t time.Time) error {
	now := s.clock.Now()
	err := s.update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMeta).Put(metaSyncedHLC, binary.BigEndian.AppendUint64(nil, uint64(now))); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(metaSynced, binary.BigEndian.AppendUint64(nil, uint64(t.UnixMilli())))
	})
	if err == nil {
		s.synced.Store(t.UnixMilli())
	}
	return err
}

// SyncedAt is the store's clock when the last exchange completed (zero if
// never, or if a build that did not keep it recorded the exchange). Stamps
// are on this clock, which runs ahead of the wall clock by as much as the
// peers' clocks do (up to max_clock_drift): it, not LastSynced, tells the
// writes made after the exchange from those before.
func (s *Store) SyncedAt() hlc.Timestamp {
	var t hlc.Timestamp
	s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(metaSyncedHLC); len(v) == 8 {
			t = hlc.Timestamp(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	return t
}

// LastSynced is when an anti-entropy exchange last completed (zero if
// never). It is read from memory: the tier asks on every digest.
func (s *Store) LastSynced() time.Time {
	ms := s.synced.Load()
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// Path is the file the store lives in.
func (s *Store) Path() string { return s.path }

// Node is the stamp identity of local writes.
func (s *Store) Node() NodeID { return s.node }

// KeyRow is a row with its key, as returned by listings.
type KeyRow struct {
	Key string
	Row Row
}

// Get returns the live row under table/key. It returns a *NotFoundError
// when the row does not exist or is deleted.
func (s *Store) Get(table, key string) (Row, error) {
	r, err := s.GetAny(table, key)
	if err == nil && !r.Alive() {
		err = &NotFoundError{Table: table, Key: key}
	}
	return r, err
}

// GetAny returns the row state under table/key, including a tombstone. A
// key never seen returns a *NotFoundError.
func (s *Store) GetAny(table, key string) (Row, error) {
	var r Row
	err := s.view(func(tx *bolt.Tx) error {
		b := tableBucket(tx, table)
		var v []byte
		if b != nil {
			v = b.Get([]byte(key))
		}
		if v == nil {
			return &NotFoundError{Table: table, Key: key}
		}
		var err error
		r, err = DecodeRow(bytes.Clone(v))
		return err
	})
	return r, err
}

// List returns up to limit live rows of table with keys after the given
// key, in key order, and the feed sequence number the listing reflects.
func (s *Store) List(table, after string, limit int) ([]KeyRow, uint64, error) {
	var out []KeyRow
	var seq uint64
	err := s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(metaSeq); len(v) == 8 {
			seq = binary.BigEndian.Uint64(v)
		}
		b := tableBucket(tx, table)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, v := c.First()
		if after != "" {
			k, v = c.Seek([]byte(after))
			if k != nil && string(k) == after {
				k, v = c.Next()
			}
		}
		for ; k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
			r, err := DecodeRow(bytes.Clone(v))
			if err != nil {
				return fmt.Errorf("%s/%s: %w", table, k, err)
			}
			if r.Alive() {
				out = append(out, KeyRow{Key: string(k), Row: r})
			}
		}
		return nil
	})
	return out, seq, err
}

// ListPrefix returns the live rows of table whose keys start with prefix,
// in key order, reading no further than the prefix's range.
func (s *Store) ListPrefix(table, prefix string) ([]KeyRow, error) {
	var out []KeyRow
	err := s.view(func(tx *bolt.Tx) error {
		b := tableBucket(tx, table)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			r, err := DecodeRow(bytes.Clone(v))
			if err != nil {
				return fmt.Errorf("%s/%s: %w", table, k, err)
			}
			if r.Alive() {
				out = append(out, KeyRow{Key: string(k), Row: r})
			}
		}
		return nil
	})
	return out, err
}

// Scan calls fn for every live row of table in key order, inside one read
// transaction, and returns the feed sequence number the scan reflects:
// every change up to it is in the rows, none after. fn's error stops the
// scan and is returned.
//
// fn runs inside the read transaction, so it must be quick and must never
// wait for the network or for another caller: while the transaction is
// open bbolt cannot reuse freed pages, and when the file outgrows its
// mapping every commit (and then every new read) waits for it. Code that
// sends rows to a client reads them in pages with List instead.
func (s *Store) Scan(table string, fn func(KeyRow) error) (uint64, error) {
	var seq uint64
	err := s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(metaSeq); len(v) == 8 {
			seq = binary.BigEndian.Uint64(v)
		}
		b := tableBucket(tx, table)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			r, err := DecodeRow(bytes.Clone(v))
			if err != nil {
				return fmt.Errorf("%s/%s: %w", table, k, err)
			}
			if !r.Alive() {
				return nil
			}
			return fn(KeyRow{Key: string(k), Row: r})
		})
	})
	return seq, err
}

// KeyHash names a row and the hash of its state, as anti-entropy compares
// them.
type KeyHash struct {
	Table, Key string
	Hash       Hash
}

// LeafKeys returns the rows (live and tombstones) in the given digest
// leaves, with their hashes, in table and key order.
//
// It scans every key of the store (hashing each key to find its leaf, and
// only the rows in the asked leaves in full): a few tens of milliseconds per
// 100,000 rows, paid only by an anti-entropy exchange that found
// differences. A persisted index by leaf would make this O(rows in those
// leaves) but costs a random B-tree insert on every write.
func (s *Store) LeafKeys(leaves []int) ([]KeyHash, error) {
	want := make(map[int]bool, len(leaves))
	for _, l := range leaves {
		want[l] = true
	}
	var out []KeyHash
	err := s.view(func(tx *bolt.Tx) error {
		rows := tx.Bucket(bucketRows)
		return rows.ForEachBucket(func(table []byte) error {
			t := string(table)
			return rows.Bucket(table).ForEach(func(k, v []byte) error {
				if want[LeafOf(t, string(k))] {
					out = append(out, KeyHash{Table: t, Key: string(k), Hash: RowHash(t, string(k), v)})
				}
				return nil
			})
		})
	})
	return out, err
}

// Rows returns the full state (tombstones included) of the named rows, as
// changes to ship to a peer. Rows that do not exist are left out.
func (s *Store) Rows(keys []KeyHash) ([]Change, error) {
	out := make([]Change, 0, len(keys))
	err := s.view(func(tx *bolt.Tx) error {
		for _, k := range keys {
			b := tableBucket(tx, k.Table)
			if b == nil {
				continue
			}
			v := b.Get([]byte(k.Key))
			if v == nil {
				continue
			}
			r, err := DecodeRow(bytes.Clone(v))
			if err != nil {
				return fmt.Errorf("%s/%s: %w", k.Table, k.Key, err)
			}
			out = append(out, Change{Table: k.Table, Key: k.Key, Row: r})
		}
		return nil
	})
	return out, err
}

// RowPos is a position in the store's rows, in table and key order: the
// last row of a page of RowsAfter. The zero RowPos is before every row.
type RowPos struct {
	Table, Key string
}

// RowsAfter returns up to limit rows after pos, in table and key order,
// tombstones included, as changes to ship to a peer, and the position of
// the last one returned. Fewer than limit rows means none follow. Each
// call is one short read transaction, so a caller paging through a large
// store never holds one open across network I/O; rows written between
// pages are seen or not according to their place.
func (s *Store) RowsAfter(pos RowPos, limit int) ([]Change, RowPos, error) {
	if limit <= 0 {
		return nil, pos, nil
	}
	var out []Change
	err := s.view(func(tx *bolt.Tx) error {
		rows := tx.Bucket(bucketRows)
		tables := rows.Cursor()
		t, _ := tables.Seek([]byte(pos.Table))
		for ; t != nil && len(out) < limit; t, _ = tables.Next() {
			b := rows.Bucket(t)
			if b == nil {
				continue
			}
			table := string(t)
			c := b.Cursor()
			var k, v []byte
			if table == pos.Table {
				k, v = c.Seek([]byte(pos.Key))
				if k != nil && string(k) == pos.Key {
					k, v = c.Next()
				}
			} else {
				k, v = c.First()
			}
			for ; k != nil && len(out) < limit; k, v = c.Next() {
				r, err := DecodeRow(bytes.Clone(v))
				if err != nil {
					return fmt.Errorf("%s/%s: %w", table, k, err)
				}
				out = append(out, Change{Table: table, Key: string(k), Row: r})
			}
		}
		return nil
	})
	if err != nil || len(out) == 0 {
		return nil, pos, err
	}
	last := out[len(out)-1]
	return out, RowPos{last.Table, last.Key}, nil
}

func tableBucket(tx *bolt.Tx, table string) *bolt.Bucket {
	return tx.Bucket(bucketRows).Bucket([]byte(table))
}

// Stats is a point-in-time summary of the store.
type Stats struct {
	// Rows is the number of live rows per table.
	Rows map[string]int64
	// Seq is the sequence number of the last committed change.
	Seq uint64
	// FirstSeq is the oldest change the feed still holds.
	FirstSeq uint64
	// Root is the digest root hash.
	Root Hash
	// FileBytes is the size of the data file.
	FileBytes int64
	// Commits is the number of transactions committed since Open.
	Commits uint64
	// CommitSeconds is the time spent committing since Open.
	CommitSeconds float64
	// RowsWritten counts row writes (local and remote) since Open.
	RowsWritten uint64
}

// Stats returns a summary of the store.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	st := Stats{Rows: make(map[string]int64, len(s.counts)), Seq: s.seq, FirstSeq: s.firstSeq, Root: s.digest.Root(),
		Commits: s.commits, CommitSeconds: s.commitTime.Seconds(), RowsWritten: s.rowsWritten}
	for t, n := range s.counts {
		st.Rows[t] = n
	}
	s.mu.RUnlock()
	if fi, err := os.Stat(s.path); err == nil {
		st.FileBytes = fi.Size()
	}
	return st
}

// Seq is the sequence number of the last committed change: cheaper than
// Stats, which also reads the file size and copies the counters.
func (s *Store) Seq() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.seq
}

// Digest returns a copy of the current digest.
func (s *Store) Digest() *Digest {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d := s.digest
	return &d
}

// Changed returns a channel that is closed at the next commit. Watchers
// wait on it, then read the feed.
func (s *Store) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

// waiters records when each writer waiting for the commit loop started to
// wait, so that a stuck loop shows in CommitStall.
type waiters struct {
	mu    sync.Mutex
	next  uint64
	since map[uint64]time.Time
}

func (w *waiters) add(t time.Time) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next++
	w.since[w.next] = t
	return w.next
}

func (w *waiters) remove(id uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.since, id)
}

func (w *waiters) oldest() (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first time.Time
	for _, t := range w.since {
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	return first, !first.IsZero()
}

// CommitStall is how long writes have waited for the commit loop without
// it completing a commit: 0 when no write is waiting, else the time since
// the later of the oldest waiting write's arrival and the last completed
// commit. A loop that keeps committing while a long queue drains (many
// large batches at once) is busy, not stalled; a stall that keeps growing
// means the loop is stuck, for example behind a read transaction that
// blocks a remap, or in one commit that never ends. It never blocks on
// the store, so a health check can call it while the store is stuck.
func (s *Store) CommitStall() time.Duration {
	first, ok := s.waiting.oldest()
	if !ok {
		return 0
	}
	if last := s.lastCommit.Load(); last > first.UnixNano() {
		first = time.Unix(0, last)
	}
	return max(0, time.Since(first))
}

// submit hands a request to the commit loop and waits for its outcome. A
// request that reached the loop is always completed, even if ctx ends:
// the caller then gets ErrUnconfirmed, not the outcome.
func (s *Store) submit(ctx context.Context, r *request) error {
	if err := s.refusesWrites(); err != nil {
		return err
	}
	id := s.waiting.add(time.Now())
	defer s.waiting.remove(id)
	r.done = make(chan struct{})
	select {
	case s.reqs <- r:
	case <-s.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		// The loop has the request and will complete it; the caller
		// stops waiting and is told the outcome is unknown.
		return fmt.Errorf("%w: %w", ErrUnconfirmed, ctx.Err())
	}
}
