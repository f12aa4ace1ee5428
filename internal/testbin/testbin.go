// Package testbin gives tests that run the real strata binary what they
// all need: the binary built once per test process from this checkout,
// and loopback addresses that are free and not handed out twice.
//
// A test package that calls Strata removes the binary in its TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testbin.Run(m)) }
package testbin

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Package is the import path of the strata command.
const Package = "github.com/strata-state/strata/agent/cmd/strata"

var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error
)

// Strata returns the path of the strata binary built from this checkout,
// building it the first time it is called in this process. A failed
// build fails t with the compiler's output.
func Strata(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "strata-testbin"); buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "strata")
		out, err := exec.Command("go", "build", "-o", binPath, Package).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build %s: %v\n%s", Package, err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Run runs the tests of m and then removes the binary Strata built, if
// any; it returns m's exit code.
func Run(m *testing.M) int {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	return code
}

var (
	givenMu sync.Mutex
	given   = map[string]bool{}
)

// FreeAddr returns a 127.0.0.1 address whose port is free for TCP and,
// when udp is set, for UDP too (memberlist binds both on one port). The
// port is closed again before the caller's process binds it, so the
// kernel may offer it twice: FreeAddr never returns an address it
// returned before in this process.
func FreeAddr(t testing.TB, udp bool) string {
	t.Helper()
	givenMu.Lock()
	defer givenMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		if given[addr] {
			l.Close()
			continue
		}
		if !udp {
			l.Close()
			given[addr] = true
			return addr
		}
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err == nil {
			u.Close()
			given[addr] = true
			return addr
		}
	}
	t.Fatal("testbin: no free 127.0.0.1 port for TCP and UDP in 100 tries")
	return ""
}
