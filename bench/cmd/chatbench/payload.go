package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/eventchat/chat/schemas"
)

// Users of the benchmark: sender i talks to receiver i only, so every direct conversation has one
// writer and the load spreads over as many subjects as there are senders.
func senderID(i int) string   { return "s" + strconv.Itoa(i) }
func receiverID(i int) string { return "r" + strconv.Itoa(i) }

// conv is the direct conversation of sender i and receiver i.
func conv(i int) schemas.Conv {
	c, err := schemas.DirectConv(senderID(i), receiverID(i))
	if err != nil {
		panic(err) // the ids above are valid by construction
	}
	return c
}

// textFill pads a message text so that the stored event is about the size of a chat line
// (~200 bytes of JSON), the same for raw publishing and for the gateway.
const textFill = "the quick brown fox jumps over the lazy dog."

// msgText is the text of a benchmark message: the phase it belongs to and its send time, which the
// receiving client reads back to measure send-to-deliver latency on the one clock of this process.
func msgText(phase int, sent time.Time) string {
	return strconv.Itoa(phase) + " " + strconv.FormatInt(sent.UnixNano(), 10) + " " + textFill
}

// parseMsgText is the inverse of msgText.
func parseMsgText(s string) (phase int, sent int64, ok bool) {
	p, rest, ok1 := strings.Cut(s, " ")
	t, _, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return 0, 0, false
	}
	ph, err1 := strconv.Atoi(p)
	ns, err2 := strconv.ParseInt(t, 10, 64)
	return ph, ns, err1 == nil && err2 == nil
}

// eventPayload is the event the gateway would store for sender i's message mid: the raw phases
// publish exactly this, so both sides move the same bytes.
func eventPayload(i int, mid, text string) []byte {
	e := schemas.Event{Type: schemas.TypeMessage, Conv: conv(i).String(), Ts: schemas.FormatTime(time.Now()),
		From: senderID(i), Mid: mid, MsgType: "text", Msg: text}
	data, err := json.Marshal(&e)
	if err != nil {
		panic(err) // a plain struct of strings always encodes
	}
	return data
}
