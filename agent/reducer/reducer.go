package reducer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/strata-state/strata/internal/abi"
)

// Table is the rows of one input table for a run.
type Table struct {
	// Name is the table's name, e.g. "machines".
	Name string
	// Rows are the table's rows, each the binary protobuf encoding of the
	// table's message, in key order.
	Rows [][]byte
}

// Record is one output record of a run.
type Record struct {
	// Name is the record type, e.g. "app_placements"; one of the
	// reducer's outputs.
	Name string
	// Key is the record's key, as the guest computed it.
	Key string
	// Value is the binary protobuf encoding of the record's message, not
	// yet checked against the contract.
	Value []byte
}

// Result is the output of a successful run.
type Result struct {
	// Records are the region's records, sorted by name and key, each
	// (name, key) once. They belong to the caller.
	Records []Record
	// RowsIn counts the input rows.
	RowsIn int
	// Duration is how long the run took, end to end.
	Duration time.Duration
}

// Reducer is one loaded reducer module with its instances. Run may be
// called concurrently; at most Config.Instances runs proceed at once.
type Reducer struct {
	cfg    Config
	host   *Host
	log    *slog.Logger
	hash   string // sha256 of the module, hex
	source string

	rt        wazero.Runtime
	compiled  wazero.CompiledModule
	interrupt string // InterruptInline or InterruptWazero
	pool      *pool

	mu     sync.Mutex
	stats  stats
	closed bool
}

// Name returns the reducer's name.
func (r *Reducer) Name() string { return r.cfg.Name }

// Hash returns the SHA-256 of the module, in hex.
func (r *Reducer) Hash() string { return r.hash }

// Config returns the reducer's configuration, with defaults applied.
func (r *Reducer) Config() Config { return r.cfg }

// Close closes the reducer's instances and runtime. Runs in flight fail
// with kind Closed.
func (r *Reducer) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.pool.close()
	return r.rt.Close(ctx)
}

// instance is one instantiated module, used by one call at a time.
type instance struct {
	mod    api.Module
	alloc  api.Function
	reduce api.Function
	stderr *tail
}

func (i *instance) close() { i.mod.Close(context.Background()) }

// moduleConfig is the sandbox of every instance: no file system, no
// environment, no arguments, clocks that do not tell the time (wazero's
// fake walltime and nanotime, the default), no sleeping, and randomness
// that reads zeros.
func moduleConfig(stderr *tail) wazero.ModuleConfig {
	return wazero.NewModuleConfig().
		WithName("").
		// instantiate calls _initialize itself, so that its errors name
		// it.
		WithStartFunctions().
		WithRandSource(zeroReader{}).
		WithStdout(stderr).
		WithStderr(stderr)
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// maxOutputBytes is how much of a failed guest's stdout and stderr its
// error keeps, at the start and again at the end; maxTraceBytes bounds the
// runtime's wasm stack trace. A failure is one log line and one status
// message: a full goroutine dump does not belong in either.
const (
	maxOutputBytes = 1024
	maxTraceBytes  = 2048
)

// clip shortens s to about max bytes, keeping its start and end, with a
// note of how much was cut.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	head, last := s[:max*3/4], s[len(s)-max/4:]
	return fmt.Sprintf("%s\n… (%d bytes cut) …\n%s", strings.ToValidUTF8(head, ""), len(s)-len(head)-len(last), strings.ToValidUTF8(last, ""))
}

// instantiate starts a new instance; ctx bounds its initialization.
func (r *Reducer) instantiate(ctx context.Context) (*instance, error) {
	ctx = context.WithValue(ctx, callKey{}, &callState{r: r}) // _initialize's logs are bounded too
	out := newTail(ctx, maxOutputBytes)
	mod, err := r.rt.InstantiateModule(ctx, r.compiled, moduleConfig(out))
	if err != nil {
		return nil, r.callError(ctx, "start instance", err, out)
	}
	inst := &instance{
		mod:    mod,
		alloc:  mod.ExportedFunction(abi.ExportAlloc),
		reduce: mod.ExportedFunction(abi.ExportReduce),
		stderr: out,
	}
	if init := mod.ExportedFunction(abi.ExportInitialize); init != nil {
		if _, err := init.Call(ctx); err != nil {
			inst.close()
			return nil, r.callError(ctx, abi.ExportInitialize, err, out)
		}
	}
	return inst, nil
}

// Run runs the reducer on the region's rows of its input tables. A table
// of the reducer's inputs that tables omits is sent empty; a table that is
// not an input is an error. Run fails with a *Error; a failed run changes
// nothing but the reducer's status, and the instance it used is discarded
// unless the failure was the guest's own error.
func (r *Reducer) Run(ctx context.Context, region string, tables []Table) (*Result, error) {
	start := time.Now()
	res, err := r.run(ctx, region, tables)
	d := time.Since(start)
	r.record(start, d, res, err)
	if err != nil {
		return nil, err
	}
	res.Duration = d
	return res, nil
}

func (r *Reducer) run(ctx context.Context, region string, tables []Table) (*Result, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, r.fail(KindClosed, errClosed)
	}
	req := abi.Request{Version: abi.Version, Reducer: r.cfg.Name, Region: region, Tables: make([]abi.Table, len(r.cfg.Inputs))}
	rowsIn := 0
	for i, name := range r.cfg.Inputs {
		req.Tables[i].Name = name
	}
	for _, t := range tables {
		i := slices.Index(r.cfg.Inputs, t.Name)
		if i < 0 {
			return nil, r.fail(KindInput, fmt.Errorf("table %q is not an input of the reducer (inputs: %s)", t.Name, strings.Join(r.cfg.Inputs, ", ")))
		}
		if req.Tables[i].Rows == nil {
			req.Tables[i].Rows = t.Rows // not copied: only read
		} else {
			req.Tables[i].Rows = slices.Concat(req.Tables[i].Rows, t.Rows)
		}
		rowsIn += len(t.Rows)
	}
	size := abi.RequestSize(&req)
	if int64(size) > r.cfg.MaxInput {
		return nil, r.fail(KindInput, fmt.Errorf("input of %d rows is %d bytes, over the limit of %d bytes (memory_limit)", rowsIn, size, r.cfg.MaxInput))
	}

	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	inst, err := r.pool.get(ctx)
	if err != nil {
		return nil, r.ctxError(ctx, "wait for an instance")
	}
	if inst == nil {
		if inst, err = r.instantiate(ctx); err != nil {
			r.pool.drop(nil)
			return nil, err
		}
	}
	records, keep, err := r.call(ctx, inst, &req, size)
	if keep {
		r.pool.put(inst)
	} else {
		r.pool.drop(inst)
	}
	if err != nil {
		return nil, err
	}
	return &Result{Records: records, RowsIn: rowsIn}, nil
}

// callState is what the log host function needs of the call it serves.
type callState struct {
	r    *Reducer
	logs int
}

type callKey struct{}

// maxLogs and maxLogBytes bound the guest's logging in one call.
const (
	maxLogs     = 100
	maxLogBytes = 1024
)

// hostLog is the strata.log import: log(level i32, ptr i32, len i32).
func (r *Reducer) hostLog(ctx context.Context, mod api.Module, stack []uint64) {
	level, ptr, n := int32(stack[0]), uint32(stack[1]), uint32(stack[2])
	cs, ok := ctx.Value(callKey{}).(*callState)
	if !ok {
		return // not called from a call of ours: nothing to bound it by
	}
	cs.logs++
	if cs.logs > maxLogs {
		if cs.logs == maxLogs+1 {
			r.log.Warn("reducer logs too much; dropping its logs for this run", "limit", maxLogs)
		}
		return
	}
	truncated := n > maxLogBytes
	n = min(n, maxLogBytes)
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		r.log.Warn("reducer logged from outside its memory", "ptr", ptr, "len", n)
		return
	}
	msg := string(b) // copy: b is a view of guest memory
	if truncated {
		msg += "…"
	}
	r.log.Log(ctx, slog.Level(level), msg, "guest", true)
}

// call runs one request on inst. keep reports whether inst may serve
// another call.
func (r *Reducer) call(ctx context.Context, inst *instance, req *abi.Request, size int) ([]Record, bool, error) {
	ctx = context.WithValue(ctx, callKey{}, &callState{r: r})
	inst.stderr.reset(ctx)
	if err := ctx.Err(); err != nil {
		return nil, false, r.callError(ctx, abi.ExportAlloc, err, inst.stderr)
	}
	res, err := inst.alloc.Call(ctx, uint64(size))
	if err != nil {
		return nil, false, r.callError(ctx, abi.ExportAlloc, err, inst.stderr)
	}
	ptr := uint32(res[0])
	if ptr == 0 {
		return nil, false, r.fail(KindMemory, fmt.Errorf("%s(%d) returned 0: the module cannot allocate the input", abi.ExportAlloc, size))
	}
	view, ok := inst.mod.Memory().Read(ptr, uint32(size))
	if !ok {
		return nil, false, r.fail(KindABI, fmt.Errorf("%s(%d) returned %#x, outside the module's memory", abi.ExportAlloc, size, ptr))
	}
	// Encode straight into the guest's buffer.
	if enc := abi.AppendRequest(view[:0], req); len(enc) != size {
		return nil, false, r.fail(KindInput, fmt.Errorf("encoded %d bytes, expected %d", len(enc), size))
	}
	res, err = inst.reduce.Call(ctx, uint64(ptr), uint64(size))
	if err != nil {
		return nil, false, r.callError(ctx, abi.ExportReduce, err, inst.stderr)
	}
	outPtr, outLen := uint32(res[0]>>32), uint32(res[0])
	if int64(outLen) > r.cfg.MaxOutput {
		return nil, false, r.fail(KindOutput, fmt.Errorf("output of %d bytes is over max_output (%d bytes)", outLen, r.cfg.MaxOutput))
	}
	view, ok = inst.mod.Memory().Read(outPtr, outLen)
	if !ok {
		return nil, false, r.fail(KindABI, fmt.Errorf("%s returned %d bytes at %#x, outside the module's memory", abi.ExportReduce, outLen, outPtr))
	}
	// The view is guest memory, which the next call overwrites: copy.
	resp, err := abi.DecodeResponse(bytes.Clone(view))
	if err != nil {
		return nil, false, r.fail(KindOutput, err)
	}
	switch {
	case resp.Panic:
		return nil, false, r.fail(KindPanic, errors.New(resp.Error))
	case resp.Error != "":
		return nil, true, r.fail(KindGuest, errors.New(resp.Error))
	}
	records, err := r.checkOutput(resp.Records)
	if err != nil {
		return nil, true, r.fail(KindOutput, err)
	}
	return records, true, nil
}

// checkOutput checks the records' names and keys, and sorts them.
func (r *Reducer) checkOutput(in []abi.Record) ([]Record, error) {
	out := make([]Record, len(in))
	for i, rec := range in {
		if !slices.Contains(r.cfg.Outputs, rec.Name) {
			return nil, fmt.Errorf("record %s/%s: %q is not an output of the reducer (outputs: %s)",
				rec.Name, rec.Key, rec.Name, strings.Join(r.cfg.Outputs, ", "))
		}
		if rec.Key == "" {
			return nil, fmt.Errorf("record %s #%d has an empty key", rec.Name, i)
		}
		out[i] = Record(rec)
	}
	slices.SortFunc(out, func(a, b Record) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	for i := 1; i < len(out); i++ {
		if out[i].Name == out[i-1].Name && out[i].Key == out[i-1].Key {
			return nil, fmt.Errorf("record %s/%s is in the output twice", out[i].Name, out[i].Key)
		}
	}
	return out, nil
}

// ctxError is the error of a run stopped by ctx.
func (r *Reducer) ctxError(ctx context.Context, what string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return r.fail(KindTimeout, fmt.Errorf("%s: run exceeded the timeout of %s", what, r.cfg.Timeout))
	}
	return r.fail(KindCanceled, fmt.Errorf("%s: %w", what, ctx.Err()))
}

// callError classifies an error of a call into the guest.
func (r *Reducer) callError(ctx context.Context, what string, err error, out *tail) error {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return r.fail(KindClosed, fmt.Errorf("%s: %w", what, errClosed))
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			return r.fail(KindTimeout, fmt.Errorf("%s: run exceeded the timeout of %s", what, r.cfg.Timeout))
		case sys.ExitCodeContextCanceled:
			return r.fail(KindCanceled, fmt.Errorf("%s: %w", what, context.Canceled))
		}
		if ctx.Err() != nil {
			return r.ctxError(ctx, what)
		}
		text := out.String()
		kind := KindTrap
		if isOOM(text) {
			kind = KindMemory
		}
		msg := fmt.Sprintf("%s: module exited with code %d", what, exit.ExitCode())
		if kind == KindMemory {
			msg += fmt.Sprintf(" (out of memory: memory_limit is %d MiB)", r.cfg.MemoryLimit>>20)
		}
		if text != "" {
			msg += "; its output:\n" + text
		}
		return r.fail(kind, errors.New(msg))
	}
	if ctx.Err() != nil {
		return r.ctxError(ctx, what)
	}
	text := out.String()
	kind := KindTrap
	msg := what + ": " + clip(err.Error(), maxTraceBytes)
	if isOOM(text) {
		kind = KindMemory
		msg += fmt.Sprintf(" (out of memory: memory_limit is %d MiB)", r.cfg.MemoryLimit>>20)
	}
	if text != "" {
		msg += "\nits output:\n" + text
	}
	return r.fail(kind, errors.New(msg))
}

// isOOM recognizes the Go runtime's and other runtimes' out-of-memory
// messages.
func isOOM(text string) bool {
	return strings.Contains(text, "out of memory") || strings.Contains(text, "cannot allocate memory")
}
