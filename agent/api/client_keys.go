package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/strata-state/strata/agent/cluster"
)

// ChangeKeyWith applies one key rotation step (add, use, remove) to a tier
// of the agent as kc says (Force for use, Fingerprint for remove), and
// returns the tier's key fingerprints after it. A use refused because
// alive members lack the key is an *Error with CodeKeyNotHeld.
func (c *Client) ChangeKeyWith(ctx context.Context, tier, op string, kc KeyChange) (cluster.KeyInfo, error) {
	body, _ := json.Marshal(kc)
	var res cluster.KeyInfo
	err := c.do(ctx, http.MethodPost, "/v1/keys/"+url.PathEscape(tier)+"/"+url.PathEscape(op), body, &res)
	return res, err
}
