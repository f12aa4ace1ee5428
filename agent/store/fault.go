package store

import (
	"errors"
	"fmt"
	"io/fs"
	"runtime/debug"
	"sync"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// Errors of a store that cannot take writes.
var (
	// ErrReadOnly is returned for writes to a store opened read-only,
	// because its file or directory could not be opened for writing.
	ErrReadOnly = errors.New("store: read-only")
	// ErrUnwritable is returned for writes while the disk refuses them
	// (full, over quota, read-only); it clears at the next commit that
	// succeeds.
	ErrUnwritable = errors.New("store: writes unavailable")
)

// health is what keeps a store from taking writes, if anything. A damaged
// file (ErrCorrupt) is sticky: writes on a damaged B-tree could spread the
// damage, so they stay refused until an operator restores the file. A disk
// error at commit clears when a later commit succeeds.
type health struct {
	mu       sync.Mutex
	corrupt  error // sticky
	readOnly error // sticky: opened read-only
	disk     error // the last commit's disk error, nil once one succeeds
}

// Unwritable reports why the store takes no writes, or nil when it does:
// the file is damaged (ErrCorrupt), it was opened read-only (ErrReadOnly),
// or the last commit failed on a disk error (ErrUnwritable). The error
// names the file and what to do. Reads keep working where the file allows.
func (s *Store) Unwritable() error {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	switch {
	case s.health.corrupt != nil:
		return s.health.corrupt
	case s.health.readOnly != nil:
		return s.health.readOnly
	}
	return s.health.disk
}

// refusesWrites is Unwritable without the disk error: a write is still
// tried after a disk error (space may have been freed), never on a
// damaged or read-only file.
func (s *Store) refusesWrites() error {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	if s.health.corrupt != nil {
		return s.health.corrupt
	}
	return s.health.readOnly
}

// noteCommit records the outcome of a transaction that wrote.
func (s *Store) noteCommit(err error) {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	switch {
	case err == nil:
		s.health.disk = nil
	case errors.As(err, new(*DamageError)):
		if s.health.corrupt == nil {
			s.health.corrupt = err
		}
	case isDiskFull(err):
		s.health.disk = fmt.Errorf("%w: %s: %v (free space on its disk, or make it writable; writes resume by themselves)", ErrUnwritable, s.path, err)
	}
}

// isDiskFull reports whether err means the disk (or the file system) takes
// no more writes, as opposed to a damaged file.
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EROFS) ||
		errors.Is(err, syscall.EFBIG) || errors.Is(err, fs.ErrPermission)
}

// DamageError is the error of a panic or memory fault inside bbolt: the
// data file does not hold what bbolt expects. It matches ErrCorrupt.
type DamageError struct {
	// Path is the data file.
	Path string
	// Cause is what bbolt panicked with.
	Cause any
}

func (e *DamageError) Error() string {
	return fmt.Sprintf("store: data file %s is damaged (%v): stop the agent and restore the file with `strata restore`, "+
		"or move it aside to rejoin empty and catch up from peers", e.Path, e.Cause)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *DamageError) Is(target error) bool { return target == ErrCorrupt }

func damaged(path string, cause any) error { return &DamageError{Path: path, Cause: cause} }

// guard runs fn, turning a panic inside bbolt (a damaged page) and a
// memory fault (a page past the end of a truncated file) into an error
// naming the file, so damage never takes the agent down.
func guard(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = damaged(path, r)
		}
	}()
	return fn()
}

// view runs a read transaction through guard. A damaged page marks the
// store corrupt: writes are refused from then on, reads of other rows go on.
func (s *Store) view(fn func(*bolt.Tx) error) error {
	err := guard(s.path, func() error { return s.db.View(fn) })
	if errors.As(err, new(*DamageError)) {
		s.noteCommit(err)
	}
	return err
}

// update runs a write transaction through guard and records its outcome
// for Unwritable. bbolt rolls a transaction back when fn panics.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	err := guard(s.path, func() error { return s.db.Update(fn) })
	s.noteCommit(err)
	return err
}
