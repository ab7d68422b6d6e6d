package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"time"
)

// namedProfiler returns a hook that starts a CPU profile and/or an execution trace of one window
// of this process (the phases that run their service in-process: presence, archive) into
// <base>-<suffix>, and returns their stop. Empty bases: no-ops.
func namedProfiler(cpuBase, traceBase, suffix string) func() func() {
	cpuPath, tracePath := suffixed(cpuBase, suffix), suffixed(traceBase, suffix)
	return func() func() {
		var stops []func()
		if f := create(cpuPath); f != nil {
			if err := pprof.StartCPUProfile(f); err != nil {
				logf("cpu profile: %v", errors.Join(err, f.Close()))
			} else {
				stops = append(stops, func() { pprof.StopCPUProfile(); closeLogged(f) })
			}
		}
		if f := create(tracePath); f != nil {
			if err := trace.Start(f); err != nil {
				logf("trace: %v", errors.Join(err, f.Close()))
			} else {
				stops = append(stops, func() { trace.Stop(); closeLogged(f) })
			}
		}
		return func() {
			for _, stop := range stops {
				stop()
			}
		}
	}
}

func suffixed(base, suffix string) string {
	if base == "" {
		return ""
	}
	return base + "-" + suffix
}

func create(path string) *os.File {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		logf("%v", err)
		return nil
	}
	return f
}

func closeLogged(f io.Closer) {
	if err := f.Close(); err != nil {
		logf("%v", err)
		return
	}
	if n, ok := f.(interface{ Name() string }); ok {
		logf("wrote %s", n.Name())
	}
}

// childProfiler returns a hook that takes a CPU profile of the chatd child srv over one window
// (from its debug listener) into path, and returns its stop, which waits for the profile; an
// empty path: nil (no profile).
func childProfiler(srv *child, path string, window time.Duration) func() func() {
	if path == "" {
		return nil
	}
	return func() func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			secs := max(1, int(window.Round(time.Second)/time.Second))
			resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", srv.DebugURL, secs))
			if err != nil {
				logf("cpu profile: %v", err)
				return
			}
			defer resp.Body.Close()
			f := create(path)
			if f == nil {
				return
			}
			if _, err := io.Copy(f, resp.Body); err != nil {
				logf("cpu profile: %v", err)
			}
			closeLogged(f)
		}()
		return func() { <-done }
	}
}
