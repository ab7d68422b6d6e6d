// Command archiver runs the archiver on its own against an external NATS (CHAT_NATS_URL) and
// ClickHouse (CHAT_CLICKHOUSE_ADDR), as it runs in Kubernetes; any number of replicas may run
// (they share one durable consumer). `archiver -help` lists every option.
//
// Exit codes: 0 clean stop, 1 a failure while running, 2 bad configuration (including no
// ClickHouse address).
package main

import (
	"errors"
	"os"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/services/archiver"
)

func main() {
	cfg := archiver.Defaults()
	platform.RunStandalone(os.Args[1:], platform.Standalone{
		Name: "archiver", AddrEnv: "CHAT_ARCHIVER_ADDR", AddrDefault: "127.0.0.1:8083",
		Bind: cfg.Bind,
		Check: func() error {
			if !cfg.Enabled() {
				return errors.New("archiver: set CHAT_CLICKHOUSE_ADDR (host:port of ClickHouse's native protocol)")
			}
			return nil
		},
		New: func(d platform.Deps) (platform.Service, error) {
			return archiver.New(cfg, archiver.Deps{NATS: d.NATS, Log: d.Log, Ops: d.Ops, Topology: d.Topology})
		},
	})
}
