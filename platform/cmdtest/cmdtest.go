// Package cmdtest runs a service's command in tests, as an operator would: the test binary
// re-executes itself as the command against a real nats-server, waits for /readyz, and stops it
// with SIGTERM. A command's test package hooks it up with
//
//	func TestMain(m *testing.M) { cmdtest.Main(m, main) }
package cmdtest

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

const runMainEnv = "CMDTEST_RUN_MAIN"

// Main runs the tests, or the command itself when the test binary was started by Start.
func Main(m *testing.M, main func()) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// NATS starts a nats-server with JetStream in a temporary directory, stopped with the test.
func NATS(t testing.TB) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

// FreeAddr is a loopback address with a free port.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Proc is a running command.
type Proc struct {
	t      testing.TB
	Cmd    *exec.Cmd
	exited chan error
}

// Start runs the command with args and the extra environment (NAME=value), killed at the end of
// the test if it is still running.
func Start(t testing.TB, env []string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), runMainEnv+"=1"), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Proc{t: t, Cmd: cmd, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	return p
}

// WaitReady polls http://addr/readyz until it answers 200, within limit.
func (p *Proc) WaitReady(addr string, limit time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-p.exited:
			p.t.Fatalf("the command exited before it was ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("/readyz on %s never answered 200 within %v", addr, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Wait waits for the command to exit on its own, within limit, and returns its exit code.
func (p *Proc) Wait(limit time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.Cmd.ProcessState.ExitCode()
	case <-time.After(limit):
		p.t.Fatalf("the command did not exit within %v", limit)
		return -1
	}
}

// Stop sends SIGTERM and returns the exit code, failing the test if it takes over 20 s.
func (p *Proc) Stop() int {
	p.t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	return p.Wait(20 * time.Second)
}

// Run runs the command with args and the extra environment to its end (within 60 s) and returns
// what it printed on stdout and its exit code.
func Run(t testing.TB, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), runMainEnv+"=1"), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%v did not end within 60s", args)
	}
	return out.String(), cmd.ProcessState.ExitCode()
}
