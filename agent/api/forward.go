package api

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/strata-state/strata/agent/api/client"
	"github.com/strata-state/strata/agent/global"
	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// Forwarded global reads.
//
// A node that is not a gateway has no global store. It answers a global
// read by asking a gateway of its own region (a member of its regional
// tier that says it is one) for the stored rows, signed by their regions,
// verifying every row (its region's signature when api.trusted_regions is
// set, and the contract, with max_per_region) and rendering the answer
// itself. It never sends the client's credentials on: it authenticates
// as a node of the region with NodeAuthHeader, an HMAC under the regional
// gossip key that every member of the region holds, over the cluster, the
// region, its name, the time and the request. A gateway accepts that
// credential only for signed global reads, within NodeAuthSkew of its
// clock. A member that lies about being a gateway therefore learns no
// token and cannot make another node serve a record its region did not
// sign or that breaks the contract: the answer is refused with a 502.

// NodeAuthHeader carries a node's credential on a forwarded read:
// "NODE UNIX-SECONDS BASE64-HMAC".
const NodeAuthHeader = "X-Strata-Node-Auth"

// NodeAuthSkew is how far a forwarded read's time may be from the
// gateway's clock.
const NodeAuthSkew = time.Minute

// forwardTimeout bounds a forwarded read.
const forwardTimeout = 10 * time.Second

// SignedRows answers a signed global read (?format=signed): the stored
// rows of the records asked for and every region's heartbeat, in the
// store's row encoding, for the asking node to verify.
type SignedRows struct {
	Rows []SignedRow `json:"rows"`
}

// SignedRow is one stored global row.
type SignedRow struct {
	Table string `json:"table"`
	Key   string `json:"key"`
	// Row is the row in the store's encoding (store.AppendRow).
	Row []byte `json:"row"`
}

// nodeMAC is the credential of node for a request to path at unix time at.
func nodeMAC(key []byte, cluster, region, node string, at int64, path string) []byte {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "strata/forward/v1\x00%s\x00%s\x00%s\x00%d\x00GET %s", cluster, region, node, at, path)
	return m.Sum(nil)
}

// nodeAuthorized reports whether r carries a valid node credential of this
// node's region.
func (s *Server) nodeAuthorized(r *http.Request) bool {
	if s.opts.NodeKeys == nil || r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/v1/global/") ||
		r.URL.Query().Get("format") != "signed" {
		return false
	}
	f := strings.Fields(r.Header.Get(NodeAuthHeader))
	if len(f) != 3 {
		return false
	}
	at, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return false
	}
	if d := time.Since(time.Unix(at, 0)); d > NodeAuthSkew || d < -NodeAuthSkew {
		return false
	}
	mac, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil {
		return false
	}
	for _, k := range s.opts.NodeKeys() {
		if subtle.ConstantTimeCompare(mac, nodeMAC(k, s.opts.Cluster, s.opts.Region, f[0], at, r.URL.RequestURI())) == 1 {
			return true
		}
	}
	return false
}

// writeSigned answers a signed read with the rows of v.
func (s *Server) writeSigned(w http.ResponseWriter, v globalView) {
	res := SignedRows{Rows: []SignedRow{}}
	for _, set := range [][]global.Stored{v.records, mapValues(v.beats)} {
		for _, rec := range set {
			ch := rec.Change()
			res.Rows = append(res.Rows, SignedRow{Table: ch.Table, Key: ch.Key, Row: store.AppendRow(nil, ch.Row)})
		}
	}
	writeJSON(w, http.StatusOK, res)
}

func mapValues[V any](m map[string]V) []V {
	out := make([]V, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}

// forwardedView asks the gateways of this region in turn for the signed
// rows of the view, until one answers with rows that verify; it answers
// errors itself. A gateway that cannot be reached, refuses or answers rows
// that fail verification is passed over, so one member that only claims
// to be a gateway (or one that is down) does not stop forwarded reads
// while another answers. The gateway that answered is asked first next
// time.
func (s *Server) forwardedView(w http.ResponseWriter, r *http.Request, sch *contracts.Schema, key string, all bool) (globalView, bool) {
	var gws []string
	if s.opts.Gateways != nil {
		gws = s.opts.Gateways()
	}
	if len(gws) == 0 {
		notGateway(w, "no gateway of its region is alive to answer global reads (see strata members)")
		return globalView{}, false
	}
	if good, _ := s.goodGateway.Load().(string); good != "" {
		if i := slices.Index(gws, good); i > 0 {
			gws = append([]string{good}, slices.Delete(slices.Clone(gws), i, i+1)...)
		}
	}
	var failed []string
	for _, gw := range gws {
		if r.Context().Err() != nil {
			break
		}
		rows, err := s.fetchSigned(r.Context(), gw, signedPath(sch.Name, key, all))
		if err != nil {
			failed = append(failed, fmt.Sprintf("gateway %s: %v", gw, err))
			continue
		}
		v, err := s.verifyView(rows, sch.Name, key, all)
		if err != nil {
			failed = append(failed, fmt.Sprintf("gateway %s answered a global read that fails verification, not served: %v", gw, err))
			continue
		}
		s.goodGateway.Store(gw)
		w.Header().Set("X-Strata-Forwarded-To", gw)
		return v, true
	}
	if len(failed) == 0 {
		failed = append(failed, r.Context().Err().Error())
	}
	writeError(w, &Error{Status: http.StatusBadGateway, Code: CodeUnavailable,
		Message: fmt.Sprintf("no gateway of this region answered the forwarded read: %s", strings.Join(failed, "; "))})
	return globalView{}, false
}

// signedPath is the gateway's path for a signed read of record name (all
// its keys, or key). Each segment is escaped with client.Segment, which
// also escapes "." and "..": url.PathEscape leaves them, and the gateway's
// router would clean them away (a read of key ".." became a 404, of "."
// a list).
func signedPath(name, key string, all bool) string {
	path := "/v1/global/" + client.Segment(name)
	if !all {
		path += "/" + client.Segment(key)
	}
	return path + "?format=signed"
}

// forwardClient sends forwarded reads. It does not follow redirects: a
// gateway answers a signed read directly, and a redirect would carry the
// node credential to wherever it points.
var forwardClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// fetchSigned performs a signed read at gateway gw.
func (s *Server) fetchSigned(ctx context.Context, gw, path string) (*SignedRows, error) {
	ctx, cancel := context.WithTimeout(ctx, forwardTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+gw+path, nil)
	if err != nil {
		return nil, err
	}
	if s.opts.NodeKeys != nil {
		if keys := s.opts.NodeKeys(); len(keys) > 0 {
			at := time.Now().Unix()
			mac := nodeMAC(keys[0], s.opts.Cluster, s.opts.Region, s.opts.Node, at, req.URL.RequestURI())
			req.Header.Set(NodeAuthHeader, fmt.Sprintf("%s %d %s", s.opts.Node, at, base64.StdEncoding.EncodeToString(mac)))
		}
	}
	resp, err := forwardClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error Error `json:"error"`
		}
		json.Unmarshal(body, &e)
		if resp.StatusCode == http.StatusUnauthorized {
			return nil, fmt.Errorf("the gateway refused this node's credential (401: %s); the nodes of a region need the same regional.keyring", e.Error.Message)
		}
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, e.Error.Message)
	}
	var rows SignedRows
	if err := json.Unmarshal(body, &rows); err != nil {
		return nil, fmt.Errorf("the answer is not a signed read: %v", err)
	}
	return &rows, nil
}

// verifyView checks every row of a gateway's answer as a change received
// from a peer would be checked: layout, region signature (when trusted
// keys are configured), and the contract with max_per_region; and that
// it holds only what was asked for.
func (s *Server) verifyView(rows *SignedRows, name, key string, all bool) (globalView, error) {
	v := globalView{beats: map[string]global.Stored{}}
	verifier := s.verifier
	if verifier == nil {
		s.untrustedOnce.Do(func() {
			s.opts.Logger.Warn("api.trusted_regions is not set: global reads forwarded to a gateway are checked against the contract, " +
				"but not against the regions' signatures (docs/SECURITY.md)")
		})
	}
	b := &global.Batch{Contract: s.opts.Contract, Holdings: global.NoHoldings{}}
	for _, sr := range rows.Rows {
		row, err := store.DecodeRow(sr.Row)
		if err != nil {
			return v, fmt.Errorf("%s/%s: %w", sr.Table, sr.Key, err)
		}
		rec, err := global.FromRow(sr.Table, sr.Key, row)
		if err != nil {
			return v, err
		}
		switch {
		case rec.Name != name && rec.Name != global.HeartbeatTable:
			return v, fmt.Errorf("%s: not asked for", rec)
		case rec.Name == name && !all && rec.Key != key:
			return v, fmt.Errorf("%s: not asked for", rec)
		case rec.Deleted():
			return v, fmt.Errorf("%s: a deleted record", rec)
		}
		if verifier != nil {
			if err := verifier.Verify(&rec); err != nil {
				return v, err
			}
		}
		if rec.Name == global.HeartbeatTable {
			v.beats[rec.Region] = rec
			continue
		}
		if err := b.Check(global.Write{Record: rec.Record, Writer: rec.Region}); err != nil {
			return v, err
		}
		v.records = append(v.records, rec)
	}
	return v, nil
}
