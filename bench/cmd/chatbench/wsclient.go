package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/eventchat/chat/services/gateway/auth"
	"github.com/gorilla/websocket"
)

// Mass-connection clients: the scenarios with thousands of sockets (group fanout, idle
// connections, the reconnect storm) use bare gorilla connections with small buffers and a reader
// goroutine each, not gatewaytest's clients (which queue up to 100,000 decoded frames each).

// sourceAddrs is how many loopback source addresses the clients spread over (127.0.0.2 and up):
// one source address has about 28,000 ephemeral ports, fewer once TIME_WAIT holds some.
const sourceAddrs = 8

var (
	dialersOnce sync.Once
	dialers     []*websocket.Dialer
)

// dialerFor returns the dialer of client i: its source address is 127.0.0.(2 + i mod 8).
func dialerFor(i int) *websocket.Dialer {
	dialersOnce.Do(func() {
		for k := range sourceAddrs {
			nd := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+k))}}
			dialers = append(dialers, &websocket.Dialer{NetDialContext: nd.DialContext, HandshakeTimeout: 15 * time.Second,
				ReadBufferSize: 2048, WriteBufferSize: 1024})
		}
	})
	return dialers[i%sourceAddrs]
}

// wsURL turns http://host:port into ws://host:port + path.
func wsURL(base, path string) string { return "ws" + strings.TrimPrefix(base, "http") + path }

// dialChat opens client i's WebSocket to chatd at base, authenticated by token.
func dialChat(ctx context.Context, base, token string, i int) (*websocket.Conn, error) {
	h := http.Header{"Authorization": {"Bearer " + token}}
	conn, resp, err := dialerFor(i).DialContext(ctx, wsURL(base, "/v1/ws"), h)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: %w (status %d)", err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	return conn, nil
}

// dialHub opens client i's WebSocket to rawhub at base, in room.
func dialHub(ctx context.Context, base, room string, i int) (*websocket.Conn, error) {
	conn, _, err := dialerFor(i).DialContext(ctx, wsURL(base, "/ws?room="+room), nil)
	if err != nil {
		return nil, fmt.Errorf("dial rawhub: %w", err)
	}
	return conn, nil
}

// tokenMinter signs tokens for simulated users with the chatd children's secret (benchSecret).
type tokenMinter struct{ t *auth.Tokens }

func newMinter() (*tokenMinter, error) {
	t, err := auth.NewTokens(context.Background(), auth.TokenConfig{Alg: auth.AlgHS256, Secret: benchSecret, TTL: 24 * time.Hour}, nil)
	if err != nil {
		return nil, err
	}
	return &tokenMinter{t: t}, nil
}

func (m *tokenMinter) token(user string) (string, error) {
	tok, _, err := m.t.Issue(user)
	return tok, err
}

// parallel runs f(i) for i in [0, n) on at most width goroutines and returns the first error.
func parallel(n, width int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range width {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}
