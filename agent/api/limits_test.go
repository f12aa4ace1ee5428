package api

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/strata-state/strata/agent/store"
	"github.com/strata-state/strata/contracts"
)

// A key over store.MaxKeyLen is refused with a 400 naming the limit, in the
// URL and in a batch, whatever the contract's own rules; a key at the
// limit is accepted.
func TestKeyLimit(t *testing.T) {
	c, err := contracts.Compile(context.Background(), os.DirFS("../../testdata/contracts/good"), []string{"shop/v1/shop.proto"})
	if err != nil {
		t.Fatal(err)
	}
	// The shop contract's stock table has no length rule on its key fields.
	a := newTestAgent(t, Options{Contract: c})

	long := strings.Repeat("s", store.MaxKeyLen) // with "/1/KIND_BOOK/true/1": over the limit
	row := func(shop string) string {
		return fmt.Sprintf(`{"shop":%q,"aisle":1,"kind":"KIND_BOOK","open":true,"serial":"1"}`, shop)
	}
	code, body := a.call("POST", "/v1/regional/stock", "["+row("ok")+","+row(long)+"]")
	if code != 400 || !strings.Contains(body, fmt.Sprint(store.MaxKeyLen)) || !strings.Contains(body, "row 1") {
		t.Errorf("batch with a long key: %d %s", code, body)
	}
	code, body = a.call("PUT", "/v1/regional/stock/"+long+"/1/KIND_BOOK/true/1", row(long))
	if code != 400 || !strings.Contains(body, fmt.Sprint(store.MaxKeyLen)) {
		t.Errorf("PUT with a long key: %d %.200s", code, body)
	}
	atLimit := strings.Repeat("s", store.MaxKeyLen-len("/1/KIND_BOOK/true/1"))
	if code, body := a.call("POST", "/v1/regional/stock", "["+row(atLimit)+"]"); code != 200 {
		t.Errorf("key at the limit: %d %.200s", code, body)
	}
}
