// Command unread runs the unread service on its own against an external NATS (CHAT_NATS_URL), as
// it runs in Kubernetes; any number of replicas may run. `unread -help` lists every option.
//
// `unread check` compares the live projection with one rebuilt from the log and prints the
// differences. Exit codes: 0 no difference, 1 differences (or, for the service, a failure while
// running), 2 bad configuration, 3 the check could not be done.
package main

import (
	"fmt"
	"os"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/services/unread"
)

// exitCheckFailed is the exit code of a check that could not be done.
const exitCheckFailed = 3

func main() {
	if len(os.Args) > 1 && os.Args[1] == "check" {
		os.Exit(check(os.Args[2:]))
	}
	serve(os.Args[1:])
}

func serve(args []string) {
	cfg := unread.Defaults()
	platform.RunStandalone(args, platform.Standalone{
		Name: "unread", AddrEnv: "CHAT_UNREAD_ADDR", AddrDefault: "127.0.0.1:8082",
		Bind: cfg.Bind,
		New:  func(d platform.Deps) (platform.Service, error) { return unread.New(cfg, d) },
	})
}

// check runs `unread check` and returns the exit code.
func check(args []string) int {
	var (
		nc platform.NATSConfig
		lc platform.LogConfig
	)
	if err := platform.ParseFlags("unread check", args, func(f *platform.Flags) {
		f.BindNATS(&nc)
		f.BindLog(&lc)
	}); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return platform.ExitConfig
	}
	log, err := platform.NewLogger(os.Stderr, lc)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return platform.ExitConfig
	}
	conn, err := platform.Connect(nc, "chat-unread-check", log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return exitCheckFailed
	}
	defer conn.Close()
	ctx, stop := platform.SignalContext()
	defer stop()
	diffs, seq, err := unread.Check(ctx, conn, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return exitCheckFailed
	}
	if len(diffs) == 0 {
		fmt.Printf("no difference at seq %d\n", seq)
		return platform.ExitOK
	}
	fmt.Printf("%d differences at seq %d (user conv field: live != rebuilt):\n", len(diffs), seq)
	for _, d := range diffs {
		fmt.Println(d)
	}
	return platform.ExitFailure
}
