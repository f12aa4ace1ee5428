package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-state/strata/agent/api"
	"github.com/strata-state/strata/contracts"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a real agent process (load, memory, restart time)",
	}
	cmd.AddCommand(newBenchRestartCmd(), newBenchTiersCmd())
	return cmd
}

func newBenchRestartCmd() *cobra.Command {
	var rows, batch int
	var dir string
	cmd := &cobra.Command{
		Use:   "restart",
		Short: "Load rows into a fresh agent process, report its memory, restart it and time the first read",
		Long: `Starts this strata binary as an agent in a temporary data directory,
loads --rows machine rows of about 200 bytes through POST /v1/regional/machines,
reports the agent's resident memory (VmRSS, and the peak VmHWM) from /proc,
stops it with SIGTERM, starts it again and measures the time from process
start to the first successful GET of a row.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return benchRestart(cmd.Context(), cmd.OutOrStdout(), rows, batch, dir)
		},
	}
	cmd.Flags().IntVar(&rows, "rows", 1_000_000, "rows to load")
	cmd.Flags().IntVar(&batch, "batch", 2000, "rows per POST")
	cmd.Flags().StringVar(&dir, "dir", "", "work directory (default: a new temporary one, removed afterwards)")
	return cmd
}

// benchAgent is a child agent process.
type benchAgent struct {
	cmd    *exec.Cmd
	client *api.Client
	start  time.Time
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startBenchAgent(dir, addr string) (*benchAgent, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := exec.Command(exe, "agent", "--config", filepath.Join(dir, "agent.toml"))
	logf, err := os.OpenFile(filepath.Join(dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	c.Stdout, c.Stderr = logf, logf
	a := &benchAgent{cmd: c, client: api.NewClient(addr, ""), start: time.Now()}
	if err := c.Start(); err != nil {
		return nil, err
	}
	return a, nil
}

// waitUntil polls fn every few milliseconds until it succeeds or the
// deadline passes.
func waitUntil(ctx context.Context, d time.Duration, fn func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("gave up after %s: %w", d, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// procStatus reads a kB field such as VmRSS from /proc/PID/status.
func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", field, pid)
}

func (a *benchAgent) stop() error {
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	return a.cmd.Wait()
}

func benchRestart(ctx context.Context, out io.Writer, rows, batch int, dir string) error {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "strata-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	// The example contract, written out so the child reads it from disk.
	err := fs.WalkDir(contracts.Example, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(contracts.Example, path)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, "contracts", path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		return err
	}
	apiPort, err := freePort()
	if err != nil {
		return err
	}
	gossipPort, err := freePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", apiPort)
	conf := fmt.Sprintf(`node = "bench-1"
cluster = "bench"
data_dir = "data"
[contracts]
dir = "contracts"
files = ["fleet/v1/regional.proto", "fleet/v1/global.proto"]
[regional]
region = "bench"
bind = "127.0.0.1:%d"
[api]
addr = %q
max_body = "64MiB"
`, gossipPort, addr)
	if err := os.WriteFile(filepath.Join(dir, "agent.toml"), []byte(conf), 0o644); err != nil {
		return err
	}

	a, err := startBenchAgent(dir, addr)
	if err != nil {
		return err
	}
	defer a.cmd.Process.Kill()
	if err := waitUntil(ctx, 30*time.Second, func() error { _, err := a.client.Status(ctx); return err }); err != nil {
		return fmt.Errorf("agent did not start (see %s): %w", filepath.Join(dir, "agent.log"), err)
	}
	fmt.Fprintf(out, "agent pid %d on %s, data in %s\n", a.cmd.Process.Pid, addr, dir)

	loadStart := time.Now()
	lastReport := loadStart
	var body strings.Builder
	for n := 0; n < rows; {
		body.Reset()
		body.WriteByte('[')
		for j := 0; j < batch && n < rows; j++ {
			if j > 0 {
				body.WriteByte(',')
			}
			fmt.Fprintf(&body, `{"id":"m-%010d","app":"app-%03d","state":"MACHINE_STATE_STARTED","healthy":true,"host":"host-ord-rack%02d-unit-%04d.internal.example","private_ip":"10.%d.%d.%d","updatedAt":"2026-11-26T14:00:00Z"}`,
				n, n%500, n%64, n%10000, (n>>16)&255, (n>>8)&255, n&255)
			n++
		}
		body.WriteByte(']')
		if _, err := a.client.Batch(ctx, "machines", []byte(body.String())); err != nil {
			return fmt.Errorf("loading rows: %w", err)
		}
		if time.Since(lastReport) > 5*time.Second || n == rows {
			lastReport = time.Now()
			el := time.Since(loadStart)
			fmt.Fprintf(out, "  loaded %d/%d rows in %s (%.0f rows/s)\n", n, rows, el.Round(time.Millisecond), float64(n)/el.Seconds())
		}
	}
	loadTime := time.Since(loadStart)
	rss, err := procStatus(a.cmd.Process.Pid, "VmRSS")
	if err != nil {
		return err
	}
	hwm, _ := procStatus(a.cmd.Process.Pid, "VmHWM")
	dbInfo, _ := os.Stat(filepath.Join(dir, "data", "regional.db"))
	if err := a.stop(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return err
		}
		return fmt.Errorf("agent exited with %v on SIGTERM (see agent.log)", err)
	}

	b, err := startBenchAgent(dir, addr)
	if err != nil {
		return err
	}
	defer b.cmd.Process.Kill()
	key := fmt.Sprintf("m-%010d", rows-1)
	if err := waitUntil(ctx, 60*time.Second, func() error { _, err := b.client.Get(ctx, "machines", key); return err }); err != nil {
		return fmt.Errorf("restarted agent did not serve %s: %w", key, err)
	}
	firstRead := time.Since(b.start)
	rss2, _ := procStatus(b.cmd.Process.Pid, "VmRSS")
	if err := b.stop(); err != nil {
		return fmt.Errorf("restarted agent exited with %v on SIGTERM", err)
	}

	mib := func(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }
	fmt.Fprintf(out, "rows loaded:              %d in %s (%.0f rows/s over HTTP, batches of %d)\n", rows, loadTime.Round(time.Millisecond), float64(rows)/loadTime.Seconds(), batch)
	if dbInfo != nil {
		fmt.Fprintf(out, "data file:                %s\n", mib(dbInfo.Size()))
	}
	fmt.Fprintf(out, "agent RSS after load:     %s (peak %s)\n", mib(rss), mib(hwm))
	fmt.Fprintf(out, "restart to first read:    %s (RSS then %s)\n", firstRead.Round(time.Millisecond), mib(rss2))
	return nil
}
