package platform

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"runtime/debug"
	"time"
)

// BindDebug binds the debug listener's address (off by default). It serves Go's profiler, which
// must never face clients: give it a loopback or otherwise private address.
func (f *Flags) BindDebug(addr *string) {
	f.String(addr, "debug-addr", "CHAT_DEBUG_ADDR", "",
		"private listen address of /debug/pprof/ and POST /debug/gc (empty: off; never expose it)")
}

// DebugHandler serves the profiler under /debug/pprof/ and POST /debug/gc, which collects garbage
// and returns freed memory to the OS (what a benchmark does before it reads the resident memory).
func DebugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("POST /debug/gc", func(w http.ResponseWriter, _ *http.Request) {
		runtime.GC()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		writeJSON(w, http.StatusOK, map[string]any{"heapInuse": ms.HeapInuse, "stackInuse": ms.StackInuse,
			"sys": ms.Sys, "goroutines": runtime.NumGoroutine()})
	})
	return mux
}

// ServeDebug serves DebugHandler on addr until ctx ends; an empty addr serves nothing. The
// listener is bound before it returns, so a failure is reported at once.
func ServeDebug(ctx context.Context, addr string, log *slog.Logger) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: DebugHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	log.Info("debug listener", "addr", ln.Addr().String())
	return nil
}
