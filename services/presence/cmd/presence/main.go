// Command presence runs the presence service on its own against an external NATS (CHAT_NATS_URL),
// as it runs in Kubernetes; any number of replicas may run. `presence -help` lists every option.
package main

import (
	"os"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/services/presence"
)

func main() {
	cfg := presence.Defaults()
	platform.RunStandalone(os.Args[1:], platform.Standalone{
		Name: "presence", AddrEnv: "CHAT_PRESENCE_ADDR", AddrDefault: "127.0.0.1:8081",
		Bind: cfg.Bind,
		New:  func(d platform.Deps) (platform.Service, error) { return presence.New(cfg, d) },
	})
}
