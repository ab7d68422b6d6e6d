// Package platform is the small shared plumbing every service uses: configuration from flags and
// CHAT_* environment variables, slog logging, the embedded nats-server, NATS connections, and the
// operational HTTP endpoints (/healthz, /readyz, /metrics). It holds no chat logic.
package platform
