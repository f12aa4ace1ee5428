package store

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Event is one entry of the change feed: the state of a row right after a
// committed change, local or remote. Seq numbers are assigned at commit,
// increase by one per event, and are never reused by a store file.
type Event struct {
	Seq   uint64
	Table string
	Key   string
	Row   Row
}

// appendEvent encodes a feed entry: table and key length-prefixed, then
// the encoded row.
func appendEvent(dst []byte, table, key string, row []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(table)))
	dst = append(dst, table...)
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	return append(dst, row...)
}

func decodeEvent(seq uint64, b []byte) (Event, error) {
	d := decoder{b: b}
	table := d.bytes(d.uvarint("table length"), "table")
	key := d.bytes(d.uvarint("key length"), "key")
	ev := Event{Seq: seq, Table: string(table), Key: string(key)}
	ev.Row = d.row()
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return Event{}, fmt.Errorf("feed entry %d: %w", seq, d.err)
	}
	return ev, nil
}

// FeedSince returns up to limit events with sequence numbers greater than
// after, in order, optionally only those of one table (table == "" for
// all). It returns ErrFeedTrimmed when events after `after` were already
// dropped, in which case the reader must start again from a snapshot. The
// second result is the sequence number the reader has now seen up to (the
// last event examined), so a filtered reader can skip past other tables.
func (s *Store) FeedSince(after uint64, table string, limit int) ([]Event, uint64, error) {
	var out []Event
	pos := after
	prefix := eventPrefix(table)
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketFeed).Cursor()
		k, v := c.Seek(seqKey(after + 1))
		if k == nil {
			return nil
		}
		if first := binary.BigEndian.Uint64(k); first > after+1 {
			return fmt.Errorf("%w: asked for changes after %d, oldest kept is %d", ErrFeedTrimmed, after, first)
		}
		for ; k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			pos = seq
			if table != "" && !bytes.HasPrefix(v, prefix) {
				continue
			}
			ev, err := decodeEvent(seq, bytes.Clone(v))
			if err != nil {
				return err
			}
			out = append(out, ev)
		}
		return nil
	})
	return out, pos, err
}

func eventPrefix(table string) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(table))), table...)
}
