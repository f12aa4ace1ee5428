// Package client is the Go client of a strata agent's HTTP API. It needs
// only the standard library, so programs that talk to an agent do not pull
// in the agent's dependencies (bbolt, memberlist, wazero, protocompile).
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Client talks to one agent's HTTP API. It is safe for concurrent use.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client for the agent at addr ("host:port" or a URL such
// as "http://host:port"), sending token as a bearer token when not empty.
func New(addr, token string) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{base: strings.TrimRight(addr, "/"), token: token, http: &http.Client{}}
}

// do sends a request and decodes a JSON answer into out, or returns *Error.
func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	resp, err := c.send(ctx, method, path, body, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("strata: %s %s: reading answer: %w", method, path, err)
	}
	return nil
}

// send sends a request and returns a 2xx response; any other answer is
// turned into *Error.
func (c *Client) send(ctx context.Context, method, path string, body []byte, header http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("strata: cannot reach the agent at %s: %w", c.base, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var eb ErrorBody
	if json.Unmarshal(raw, &eb) != nil || eb.Error == nil {
		return nil, &Error{Status: resp.StatusCode, Code: CodeInternal,
			Message: fmt.Sprintf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(raw))}
	}
	eb.Error.Status = resp.StatusCode
	return nil, eb.Error
}

// Segment escapes one path segment of an API URL: a table, record or
// key. Everything that could change the path's meaning is escaped: "/"
// (a key "a/b" stays one key), "." and ".." (never dot segments, which
// HTTP clients and servers collapse: `del items a/../b` must not delete
// b), "%", "?" and "#". The server unescapes each segment.
func Segment(s string) string {
	e := url.PathEscape(s)
	if strings.Trim(s, ".") == "" {
		// "", "." and "..": escape the dots, which PathEscape keeps.
		e = strings.ReplaceAll(e, ".", "%2E")
	}
	return e
}

// rowPath is the path of one row; the key is one segment whatever it
// holds.
func rowPath(table, key string) string {
	return "/v1/regional/" + Segment(table) + "/" + Segment(key)
}

// Put replaces the row under key with row (a protojson object).
func (c *Client) Put(ctx context.Context, table, key string, row json.RawMessage) (WriteResult, error) {
	var res WriteResult
	err := c.do(ctx, http.MethodPut, rowPath(table, key), row, &res)
	return res, err
}

// Patch writes the fields named in row (a protojson object) of an
// existing row.
func (c *Client) Patch(ctx context.Context, table, key string, row json.RawMessage) (WriteResult, error) {
	var res WriteResult
	err := c.do(ctx, http.MethodPatch, rowPath(table, key), row, &res)
	return res, err
}

// Get returns one row.
func (c *Client) Get(ctx context.Context, table, key string) (RowBody, error) {
	var res RowBody
	err := c.do(ctx, http.MethodGet, rowPath(table, key), nil, &res)
	return res, err
}

// Delete deletes one row.
func (c *Client) Delete(ctx context.Context, table, key string) (WriteResult, error) {
	var res WriteResult
	err := c.do(ctx, http.MethodDelete, rowPath(table, key), nil, &res)
	return res, err
}

// List returns one page of rows with keys after `after` (limit 0: the
// server's default page size).
func (c *Client) List(ctx context.Context, table, after string, limit int) (ListResult, error) {
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/regional/" + Segment(table)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var res ListResult
	err := c.do(ctx, http.MethodGet, path, nil, &res)
	return res, err
}

// Batch upserts rows (a JSON array of protojson objects) in one
// transaction.
func (c *Client) Batch(ctx context.Context, table string, rows json.RawMessage) (BatchResult, error) {
	var res BatchResult
	err := c.do(ctx, http.MethodPost, "/v1/regional/"+Segment(table), rows, &res)
	return res, err
}

// Status returns the agent's /v1/status document.
func (c *Client) Status(ctx context.Context) (json.RawMessage, error) {
	var res json.RawMessage
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &res)
	return res, err
}

// Members returns each tier's members as this agent sees them.
func (c *Client) Members(ctx context.Context) (MembersResult, error) {
	var res MembersResult
	err := c.do(ctx, http.MethodGet, "/v1/members", nil, &res)
	return res, err
}

// GetJSON sends GET path and decodes the JSON answer into out: for API
// paths this client has no method for.
func (c *Client) GetJSON(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, out)
}

// PutJSON sends PUT path with a JSON body and decodes the answer into out
// (nil: discarded).
func (c *Client) PutJSON(ctx context.Context, path string, body []byte, out any) error {
	return c.do(ctx, http.MethodPut, path, body, out)
}

// ChangeKey applies one key rotation step (add, use, remove) to a tier of
// the agent, and returns the tier's key fingerprints after it.
func (c *Client) ChangeKey(ctx context.Context, tier, op string, key []byte) (KeyInfo, error) {
	body, _ := json.Marshal(KeyChange{Key: base64.StdEncoding.EncodeToString(key)})
	var res KeyInfo
	err := c.do(ctx, http.MethodPost, "/v1/keys/"+Segment(tier)+"/"+Segment(op), body, &res)
	return res, err
}

// ChangeKeyWith applies one key rotation step (add, use, remove) to a tier
// of the agent as kc says (Force for use, Fingerprint for remove), and
// returns the tier's key fingerprints after it. A use refused because
// alive members lack the key is an *Error with code key_not_held.
func (c *Client) ChangeKeyWith(ctx context.Context, tier, op string, kc KeyChange) (KeyInfo, error) {
	body, _ := json.Marshal(kc)
	var res KeyInfo
	err := c.do(ctx, http.MethodPost, "/v1/keys/"+Segment(tier)+"/"+Segment(op), body, &res)
	return res, err
}

// WatchEvent is one server-sent event of a watch stream.
type WatchEvent struct {
	// ID is the feed position, for resuming; 0 for snapshot events.
	ID uint64
	// Name is one of the Event constants.
	Name string
	// Data is the event's JSON payload: a RowBody for snapshot, put and
	// delete events.
	Data json.RawMessage
}

// Watch streams a table's rows and changes to fn until ctx ends, the
// stream breaks, or fn returns an error. since, when not zero, resumes
// after that event id.
func (c *Client) Watch(ctx context.Context, table string, since uint64, fn func(WatchEvent) error) error {
	return c.watch(ctx, "/v1/watch/regional/"+Segment(table), since, fn)
}

// WatchGlobal streams a global record type's entries (every region), then
// its changes, like Watch. It needs a gateway (or a node that forwards).
func (c *Client) WatchGlobal(ctx context.Context, record string, since uint64, fn func(WatchEvent) error) error {
	return c.watch(ctx, "/v1/watch/global/"+Segment(record), since, fn)
}

func (c *Client) watch(ctx context.Context, path string, since uint64, fn func(WatchEvent) error) error {
	table := path
	h := http.Header{"Accept": {"text/event-stream"}}
	if since > 0 {
		h.Set("Last-Event-ID", strconv.FormatUint(since, 10))
	}
	resp, err := c.send(ctx, http.MethodGet, path, nil, h)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var ev WatchEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Name != "" {
				if err := fn(ev); err != nil {
					return err
				}
			}
			ev = WatchEvent{}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id: "):
			ev.ID, _ = strconv.ParseUint(line[4:], 10, 64)
		case strings.HasPrefix(line, "event: "):
			ev.Name = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.Data = append(ev.Data, line[6:]...)
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("strata: watch %s: %w", table, err)
	}
	return ctx.Err()
}

// Backup streams a backup of the agent's stores (GET /v1/backup, a tar
// stream) to w and returns the bytes written. `strata restore` (or
// store.RestoreBackup) turns it back into a data_dir.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, http.MethodGet, "/v1/backup", nil, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("strata: backup: %w", err)
	}
	return n, nil
}
