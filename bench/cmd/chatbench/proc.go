package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The servers under test run as child processes, so that their CPU time and resident memory are
// read apart from the load generator's (/proc/<pid>): chatd, the all-in-one (embedded nats-server,
// gateway, presence and unread; no archive), and rawhub, the raw WebSocket broadcast baseline. Both
// are built once per run from this repository.

// binaries are the built servers.
type binaries struct{ chatd, rawhub string }

var (
	buildOnce sync.Once
	built     binaries
	buildErr  error
)

// buildServers builds chatd and rawhub into a temporary directory (once per run).
func buildServers() (binaries, error) {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "chatbench-bin-")
		if err != nil {
			buildErr = err
			return
		}
		root, err := repoRoot()
		if err != nil {
			buildErr = err
			return
		}
		built = binaries{chatd: filepath.Join(dir, "chatd"), rawhub: filepath.Join(dir, "rawhub")}
		for _, b := range []struct{ out, pkg, dir string }{
			{built.chatd, ".", filepath.Join(root, "cmd/chatd")}, {built.rawhub, "./cmd/rawhub", filepath.Join(root, "bench")},
		} {
			cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
			cmd.Dir = b.dir
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b.dir, err, out)
				return
			}
		}
	})
	return built, buildErr
}

// repoRoot is the directory holding go.work, found from the working directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run chatbench inside the repository (no go.work above the working directory)")
		}
		dir = parent
	}
}

// child is a running server process.
type child struct {
	name      string
	cmd       *exec.Cmd
	dir       string // its data directory, removed at stop ("" for none)
	URL       string // http://host:port of its clients
	NATSURL   string // chatd: nats://host:port of its embedded server
	DebugURL  string // http://host:port of its debug listener
	done      chan error
	stderrLog *os.File
}

// chatdOptions configure one chatd child beyond the benchmark's defaults.
type chatdOptions struct {
	Fsync bool
	Env   []string // more CHAT_* settings, last wins
}

// benchSecret is the HS256 secret the chatd children sign tokens with: the load generator mints
// tokens for its simulated users with it (registration hashes a password: seconds for thousands).
const benchSecret = "chatbench-secret-0123456789abcdef0123456789"

// startChatd starts chatd on free loopback ports with a fresh data directory.
func startChatd(o chatdOptions) (*child, error) {
	bins, err := buildServers()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "chatbench-chatd-")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	addr, natsAddr, debugAddr := "127.0.0.1:"+ports[0], "127.0.0.1:"+ports[1], "127.0.0.1:"+ports[2]
	env := append(os.Environ(),
		"CHAT_ADDR="+addr, "CHAT_NATS_LISTEN="+natsAddr, "CHAT_DEBUG_ADDR="+debugAddr,
		"CHAT_DATA_DIR="+dir, "CHAT_LOCAL_CLICKHOUSE=off", "CHAT_CLICKHOUSE_ADDR=",
		"CHAT_NATS_SYNC_ALWAYS="+strconv.FormatBool(o.Fsync),
		"CHAT_JWT_SECRET="+benchSecret, "CHAT_LOG_LEVEL=warn",
		// The benchmark measures the write and delivery paths, not the per-session limiter.
		"CHAT_RATE_LIMIT=1000000000", "CHAT_RATE_BURST=1000000", "CHAT_MAX_PENDING_ACKS=4096", "CHAT_SEND_QUEUE=16384",
	)
	env = append(env, o.Env...)
	c := &child{name: "chatd", dir: dir, URL: "http://" + addr, NATSURL: "nats://" + natsAddr, DebugURL: "http://" + debugAddr}
	if err := c.start(exec.Command(bins.chatd), env, nil); err != nil {
		return nil, err
	}
	if err := c.waitReady(90 * time.Second); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// startRawhub starts the raw broadcast server.
func startRawhub() (*child, error) {
	bins, err := buildServers()
	if err != nil {
		return nil, err
	}
	c := &child{name: "rawhub"}
	lines := make(chan string, 1)
	if err := c.start(exec.Command(bins.rawhub, "-addr", "127.0.0.1:0", "-debug-addr", "127.0.0.1:0"), os.Environ(), lines); err != nil {
		return nil, err
	}
	select {
	case l := <-lines:
		f := strings.Fields(l) // rawhub listening <addr> debug <addr>
		if len(f) != 5 {
			c.stop()
			return nil, fmt.Errorf("rawhub: unexpected first line %q", l)
		}
		c.URL, c.DebugURL = "http://"+f[2], "http://"+f[4]
	case err := <-c.done:
		return nil, fmt.Errorf("rawhub exited: %v", err)
	case <-time.After(30 * time.Second):
		c.stop()
		return nil, errors.New("rawhub did not start")
	}
	return c, nil
}

// start runs cmd with env; its stderr goes to a log file kept for the reader, its first stdout
// line (if lines is not nil) to lines.
func (c *child) start(cmd *exec.Cmd, env []string, lines chan<- string) error {
	cmd.Env = env
	logFile, err := os.CreateTemp("", "chatbench-"+c.name+"-*.log")
	if err != nil {
		return err
	}
	cmd.Stderr = logFile
	c.stderrLog = logFile
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	c.cmd = cmd
	c.done = make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		first := true
		for sc.Scan() {
			if first && lines != nil {
				lines <- sc.Text()
			}
			first = false
		}
		c.done <- cmd.Wait()
	}()
	return nil
}

// waitReady polls /readyz until it answers 200.
func (c *child) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(c.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-c.done:
			return fmt.Errorf("%s exited before ready: %v (log %s)", c.name, err, c.stderrLog.Name())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s (log %s)", c.name, timeout, c.stderrLog.Name())
		}
	}
}

// stop sends SIGTERM and waits for the exit (SIGKILL after 30 s), then removes the data directory.
func (c *child) stop() {
	if c == nil || c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
	_ = c.stderrLog.Close()
	if fi, err := os.Stat(c.stderrLog.Name()); err == nil && fi.Size() == 0 {
		_ = os.Remove(c.stderrLog.Name())
	}
}

// cpu is the user and system CPU time the child has used so far.
func (c *child) cpu() time.Duration { return procCPU(c.cmd.Process.Pid) }

// selfCPU is the user and system CPU time this process has used so far.
func selfCPU() time.Duration { return procCPU(os.Getpid()) }

// procCPU is the user and system CPU time process pid has used so far (0 if it cannot be read).
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name (in parentheses, which may hold spaces): utime and stime
	// are the 14th and 15th of the whole line, in clock ticks (100 a second on Linux).
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100)
}

// rss is the child's resident memory in bytes.
func (c *child) rss() int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// gcStats is what POST /debug/gc answers.
type gcStats struct {
	HeapInuse  int64 `json:"heapInuse"`
	StackInuse int64 `json:"stackInuse"`
	Sys        int64 `json:"sys"`
	Goroutines int   `json:"goroutines"`
}

// gc makes the child collect garbage and return freed memory to the OS, then reads its RSS.
func (c *child) gc(ctx context.Context) (gcStats, int64, error) {
	var st gcStats
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.DebugURL+"/debug/gc", nil)
	if err != nil {
		return st, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, 0, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, 0, err
	}
	return st, c.rss(), nil
}

// cpuMeter measures a child's CPU time over a window.
type cpuMeter struct {
	c  *child
	t0 time.Time
	u0 time.Duration
}

func meterCPU(c *child) cpuMeter { return cpuMeter{c: c, t0: time.Now(), u0: c.cpu()} }

// stop returns the CPU time used since the meter started and the cores that makes.
func (m cpuMeter) stop() (used time.Duration, cores float64) {
	used = m.c.cpu() - m.u0
	return used, used.Seconds() / time.Since(m.t0).Seconds()
}

// freePorts reserves n free loopback ports (closed again: a race with other programs is possible
// but harmless on a benchmark machine).
func freePorts(n int) ([]string, error) {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out = append(out, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	return out, nil
}
