module github.com/eventchat/chat/bench

go 1.26.0

replace (
	github.com/eventchat/chat/platform => ../platform
	github.com/eventchat/chat/schemas => ../schemas
	github.com/eventchat/chat/services/gateway => ../services/gateway
)

require (
	github.com/eventchat/chat/schemas v0.0.0-00010101000000-000000000000
	github.com/eventchat/chat/services/gateway v0.0.0-00010101000000-000000000000
	github.com/nats-io/nats-server/v2 v2.15.2
	github.com/nats-io/nats.go v1.55.0
)
