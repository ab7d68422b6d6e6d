package main

import (
	"errors"
	"io"
	"os"
	"runtime/pprof"
	"runtime/trace"
)

// profiler returns a hook that starts a CPU profile and/or an execution trace of one window (the
// closed-loop gateway measurement) and returns their stop; the gateway and nats-server run in this
// process, so both show where the server side spends its time and waits. Empty paths: no-ops.
func profiler(cpuBase, traceBase string, fsync bool) func() func() {
	return namedProfiler(cpuBase, traceBase, "fsync-"+onOff(fsync))
}

// namedProfiler is profiler writing to <base>-<suffix>.
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
