// Command presence runs the presence service on its own against an external NATS (CHAT_NATS_URL),
// as it runs in Kubernetes; any number of replicas may run. `presence -help` lists every option.
package main

import (
	"log/slog"
	"os"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/presence"
	"github.com/nats-io/nats.go"
)

func main() {
	cfg := presence.Defaults()
	platform.RunStandalone(os.Args[1:], platform.Standalone{
		Name: "presence", AddrEnv: "CHAT_PRESENCE_ADDR", AddrDefault: "127.0.0.1:8081",
		Bind: cfg.Bind,
		New: func(nc *nats.Conn, log *slog.Logger, ops *platform.Ops, topo schemas.Topology) (platform.Service, error) {
			return presence.New(cfg, presence.Deps{NATS: nc, Log: log, Ops: ops, Topology: topo})
		},
	})
}
