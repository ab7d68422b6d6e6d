// Command rawhub is the raw baseline of the WebSocket benchmarks: the minimal broadcast server of
// gorilla/websocket's chat example (one hub goroutine, a read pump and a write pump per
// connection, every message prepared once and written to each member), with rooms. It stores
// nothing, checks nothing and drops a client whose send buffer fills. chatbench starts it as a
// child process, to read its CPU time and resident memory apart from the load generator's.
//
//	rawhub -addr 127.0.0.1:0 -debug-addr 127.0.0.1:0
//
// It prints "rawhub listening <addr> debug <addr>" once it accepts connections. A client joins
// room R with GET /ws?room=R; every text message it sends goes to every member of R, itself
// included.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/gorilla/websocket"
)

const (
	sendBuffer = 256
	pingPeriod = 25 * time.Second
	pongWait   = 60 * time.Second
	writeWait  = 10 * time.Second
	maxMessage = 64 << 10
)

type client struct {
	room string
	conn *websocket.Conn
	send chan *websocket.PreparedMessage
}

type broadcast struct {
	room string
	msg  *websocket.PreparedMessage
}

// hub owns the rooms: only its goroutine touches them.
type hub struct {
	rooms      map[string]map[*client]bool
	register   chan *client
	unregister chan *client
	broadcast  chan broadcast
}

func (h *hub) run() {
	for {
		select {
		case c := <-h.register:
			if h.rooms[c.room] == nil {
				h.rooms[c.room] = map[*client]bool{}
			}
			h.rooms[c.room][c] = true
		case c := <-h.unregister:
			if members := h.rooms[c.room]; members[c] {
				delete(members, c)
				close(c.send)
			}
		case b := <-h.broadcast:
			members := h.rooms[b.room]
			for c := range members {
				select {
				case c.send <- b.msg:
				default: // too slow: dropped, as the example does
					delete(members, c)
					close(c.send)
				}
			}
		}
	}
}

func (h *hub) readPump(c *client) {
	defer func() {
		h.unregister <- c
		c.conn.Close()
	}()
	c.conn.SetReadLimit(maxMessage)
	_ = c.conn.SetReadDeadline(time.Now().Add(pongWait))
	c.conn.SetPongHandler(func(string) error { return c.conn.SetReadDeadline(time.Now().Add(pongWait)) })
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		pm, err := websocket.NewPreparedMessage(websocket.TextMessage, data)
		if err != nil {
			return
		}
		h.broadcast <- broadcast{room: c.room, msg: pm}
	}
}

func writePump(c *client) {
	ticker := time.NewTicker(pingPeriod)
	defer func() {
		ticker.Stop()
		c.conn.Close()
	}()
	for {
		select {
		case pm, ok := <-c.send:
			_ = c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if !ok {
				_ = c.conn.WriteMessage(websocket.CloseMessage, nil)
				return
			}
			if err := c.conn.WritePreparedMessage(pm); err != nil {
				return
			}
		case <-ticker.C:
			_ = c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	debugAddr := flag.String("debug-addr", "127.0.0.1:0", "listen address of POST /debug/gc and /debug/pprof/")
	flag.Parse()
	h := &hub{rooms: map[string]map[*client]bool{}, register: make(chan *client),
		unregister: make(chan *client), broadcast: make(chan broadcast)}
	go h.run()
	// The buffer sizes are the library's defaults (4 KB each), as in the example.
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := &client{room: r.URL.Query().Get("room"), conn: conn, send: make(chan *websocket.PreparedMessage, sendBuffer)}
		h.register <- c
		go writePump(c)
		go h.readPump(c)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	dln, err := net.Listen("tcp", *debugAddr)
	if err != nil {
		log.Fatal(err)
	}
	go func() { log.Fatal(http.Serve(dln, platform.DebugHandler())) }()
	fmt.Printf("rawhub listening %s debug %s\n", ln.Addr(), dln.Addr())
	log.Fatal(http.Serve(ln, mux))
}
