// Package localch runs a ClickHouse server from the binary installed on this machine, with its
// data in a directory of ours, listening on loopback only: for the all-in-one (`make run` with
// ClickHouse installed) and for tests. It is not how production runs ClickHouse.
package localch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// ErrNotInstalled is returned when no ClickHouse server binary is found.
var ErrNotInstalled = errors.New("localch: no ClickHouse server installed (apt-get install clickhouse-server clickhouse-client)")

// Binary finds the server: clickhouse-server on PATH or in /usr/sbin (Debian), or the single
// `clickhouse` binary of newer releases (run as `clickhouse server`). It returns the command and
// its leading arguments.
func Binary() (string, []string, error) {
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return p, nil, nil
	}
	for _, p := range []string{"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil, nil
		}
	}
	if p, err := exec.LookPath("clickhouse"); err == nil {
		return p, []string{"server"}, nil
	}
	return "", nil, ErrNotInstalled
}

// Server is a running (or stopped) local ClickHouse.
type Server struct {
	Dir      string
	TCPPort  int
	HTTPPort int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Pid is the server process's id (0 when it is not running), for measuring its resource use.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Addr is the native protocol address, for clickhouse-go.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.TCPPort) }

// Options are a fresh server's settings; zero ports pick free ones.
type Options struct {
	TCPPort, HTTPPort int
	// Log is where the server's console output goes (nil: Dir/server.log).
	LogFile string
}

// Start starts a server with its files under dir (created if needed) and waits until it answers.
// The same dir and ports can be started again after Stop: its data is kept.
func Start(ctx context.Context, dir string, o Options) (*Server, error) {
	if _, _, err := Binary(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, TCPPort: o.TCPPort, HTTPPort: o.HTTPPort}
	if s.TCPPort == 0 {
		if s.TCPPort, err = freePort(); err != nil {
			return nil, err
		}
	}
	if s.HTTPPort == 0 {
		if s.HTTPPort, err = freePort(); err != nil {
			return nil, err
		}
	}
	if err := s.writeConfig(); err != nil {
		return nil, err
	}
	if err := s.Restart(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writeConfig writes a minimal config: loopback only, one passwordless default user restricted to
// loopback, UTC. The <yandex> root is what 18.16 reads; current releases still accept it.
func (s *Server) writeConfig() error {
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas"} {
		if err := os.MkdirAll(filepath.Join(s.Dir, d), 0o700); err != nil {
			return err
		}
	}
	cfg := fmt.Sprintf(`<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>%d</tcp_port>
  <http_port>%d</http_port>
  <path>%s/data/</path>
  <tmp_path>%s/tmp/</tmp_path>
  <user_files_path>%s/user_files/</user_files_path>
  <format_schema_path>%s/format_schemas/</format_schema_path>
  <mark_cache_size>268435456</mark_cache_size>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
</yandex>
`, s.TCPPort, s.HTTPPort, s.Dir, s.Dir, s.Dir, s.Dir)
	users := `<yandex>
  <profiles><default></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
`
	if err := os.WriteFile(filepath.Join(s.Dir, "config.xml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.Dir, "users.xml"), []byte(users), 0o600)
}

// Restart starts the server process again (after Stop, or the first time) and waits until it
// answers a query, or ctx ends.
func (s *Server) Restart(ctx context.Context) error {
	bin, args, err := Binary()
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		return errors.New("localch: already running")
	}
	logf, err := os.OpenFile(filepath.Join(s.Dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	cmd := exec.Command(bin, append(args, "--config-file="+filepath.Join(s.Dir, "config.xml"))...)
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so a stop reaches every process it forks.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.mu.Unlock()
		return fmt.Errorf("localch: start %s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	return s.waitReady(ctx, done)
}

func (s *Server) waitReady(ctx context.Context, done <-chan struct{}) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.Addr()}, DialTimeout: time.Second})
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err = conn.Ping(pctx)
			cancel()
			conn.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("localch: server exited at start; see %s", filepath.Join(s.Dir, "server.log"))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = s.Stop()
			return fmt.Errorf("localch: server not answering on %s after 60s; see %s", s.Addr(), filepath.Join(s.Dir, "server.log"))
		}
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 15 s) and waits for it. Its data stays.
func (s *Server) Stop() error { return s.stop(syscall.SIGTERM) }

// Kill stops the server abruptly (SIGKILL), as a crash would.
func (s *Server) Kill() error { return s.stop(syscall.SIGKILL) }

func (s *Server) stop(sig syscall.Signal) error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	return nil
}
