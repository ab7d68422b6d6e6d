package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/eventchat/chat/platform"
	"github.com/eventchat/chat/schemas"
	"github.com/eventchat/chat/services/gateway/auth"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func (gw *Gateway) routes() http.Handler {
	mux := http.NewServeMux()
	gw.deps.Ops.Mount(mux)
	mux.HandleFunc("POST /v1/register", gw.handleRegister)
	mux.HandleFunc("POST /v1/login", gw.handleLogin)
	mux.HandleFunc("GET /v1/ws", gw.handleWS)
	mux.HandleFunc("GET /v1/conversations/{conv}/messages", gw.handleMessages)
	mux.HandleFunc("POST /v1/poll", gw.handlePoll)
	mux.HandleFunc("POST /v1/attachments", gw.handleUpload)
	mux.HandleFunc("GET /v1/attachments/{id}", gw.handleDownload)
	gw.mountWeb(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, schemas.Errorf(schemas.CodeNotFound, "no such endpoint"))
	})
	return mux
}

// marshalFrame encodes a frame as JSON without HTML escaping (frames are data, not markup).
func marshalFrame(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// asProtocolError maps any error to what a client may see: protocol errors as they are, NATS
// trouble as unavailable, anything else as internal without details.
func asProtocolError(err error) *schemas.Error {
	var pe *schemas.Error
	switch {
	case errors.As(err, &pe):
		return pe
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, errAppenderClosed):
		return schemas.Errorf(schemas.CodeUnavailable, "storage is temporarily unavailable: retry")
	}
	return schemas.Errorf(schemas.CodeInternal, "internal error")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := marshalFrame(v)
	if err != nil {
		status, data = http.StatusInternalServerError, []byte(`{"errCode":"internal","errMsg":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

func writeError(w http.ResponseWriter, err error) {
	pe := asProtocolError(err)
	writeJSON(w, pe.Code.HTTPStatus(), schemas.HTTPError{ErrCode: pe.Code, ErrMsg: pe.Msg})
}

func (gw *Gateway) httpError(w http.ResponseWriter, err error) {
	pe := asProtocolError(err)
	if pe.Code == schemas.CodeInternal || pe.Code == schemas.CodeUnavailable {
		gw.log.Error("request failed", "err", err)
	}
	gw.metrics.errors.WithLabelValues(string(pe.Code)).Inc()
	writeError(w, pe)
}

// decodeBody reads a JSON body of at most 64 KiB.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, schemas.MaxFrameBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return schemas.Errorf(schemas.CodeTooLarge, "request body larger than 64 KiB")
		}
		return schemas.Errorf(schemas.CodeBadRequest, "unreadable body")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return schemas.Errorf(schemas.CodeBadRequest, "body must be a JSON object: "+jsonProblem(err))
	}
	return nil
}

func (gw *Gateway) handleRegister(w http.ResponseWriter, r *http.Request) {
	var req schemas.RegisterRequest
	if err := decodeBody(w, r, &req); err != nil {
		gw.httpError(w, err)
		return
	}
	err := gw.accounts.Register(r.Context(), req.User, req.Password, req.Name)
	switch {
	case errors.Is(err, auth.ErrTaken):
		gw.httpError(w, schemas.Errorf(schemas.CodeConflict, "user id is taken"))
	case errors.Is(err, auth.ErrInvalid):
		gw.httpError(w, schemas.Errorf(schemas.CodeBadRequest, err.Error()))
	case err != nil:
		gw.httpError(w, err)
	default:
		writeJSON(w, http.StatusCreated, schemas.RegisterResponse{User: req.User})
	}
}

func (gw *Gateway) handleLogin(w http.ResponseWriter, r *http.Request) {
	var req schemas.LoginRequest
	if err := decodeBody(w, r, &req); err != nil {
		gw.httpError(w, err)
		return
	}
	err := gw.accounts.Authenticate(r.Context(), req.User, req.Password)
	switch {
	case errors.Is(err, auth.ErrBadCredentials):
		gw.httpError(w, schemas.Errorf(schemas.CodeUnauthorized, "wrong user or password"))
		return
	case err != nil:
		gw.httpError(w, err)
		return
	}
	token, exp, err := gw.tokens.Issue(req.User)
	if errors.Is(err, auth.ErrCannotIssue) {
		gw.httpError(w, schemas.Errorf(schemas.CodeUnavailable, "this gateway does not issue tokens: log in with your identity provider"))
		return
	}
	if err != nil {
		gw.httpError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, schemas.LoginResponse{Token: token, ExpiresAt: schemas.FormatTime(exp)})
}

// bearer authenticates an HTTP request by its Authorization header.
func (gw *Gateway) bearer(r *http.Request) (string, time.Time, error) {
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || token == "" {
		return "", time.Time{}, schemas.Errorf(schemas.CodeUnauthorized, "missing bearer token")
	}
	user, exp, err := gw.tokens.Verify(token)
	if err != nil {
		return "", time.Time{}, schemas.Errorf(schemas.CodeUnauthorized, "invalid or expired token")
	}
	return user, exp, nil
}

func (gw *Gateway) handleMessages(w http.ResponseWriter, r *http.Request) {
	user, _, err := gw.bearer(r)
	if err != nil {
		gw.httpError(w, err)
		return
	}
	q := r.URL.Query()
	var hq historyQuery
	if hq.before, err = queryUint(q, "before"); err == nil {
		if hq.after, err = queryUint(q, "after"); err == nil {
			var limit *uint64
			if limit, err = queryUint(q, "limit"); err == nil && limit != nil {
				n := int(min(*limit, 1<<20))
				hq.limit = &n
			}
		}
	}
	if err != nil {
		gw.httpError(w, err)
		return
	}
	conv, err := schemas.ParseConv(r.PathValue("conv"))
	if err != nil {
		gw.httpError(w, schemas.Errorf(schemas.CodeBadRequest, "invalid conversation id"))
		return
	}
	hq.conv = conv
	msgs, err := gw.history(r.Context(), user, hq)
	if err != nil {
		gw.httpError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, schemas.MessagesResponse{Messages: msgs})
}

func queryUint(q url.Values, name string) (*uint64, error) {
	s := q.Get(name)
	if s == "" {
		return nil, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		v, err = math.MaxUint64, nil // a number past any seq or limit: the largest
	}
	if err != nil {
		return nil, schemas.Errorf(schemas.CodeBadRequest, name+" must be a non-negative integer")
	}
	return &v, nil
}

// originAllowed: no Origin (not a browser), the request's own host, or a configured origin.
func (gw *Gateway) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, o := range gw.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	return false
}

func (gw *Gateway) handleWS(w http.ResponseWriter, r *http.Request) {
	switch {
	case gw.draining.Load():
		gw.httpError(w, schemas.Errorf(schemas.CodeUnavailable, "server shutting down"))
		return
	case !websocket.IsWebSocketUpgrade(r):
		gw.httpError(w, schemas.Errorf(schemas.CodeBadRequest, "WebSocket upgrade expected"))
		return
	case !gw.originAllowed(r):
		gw.httpError(w, schemas.Errorf(schemas.CodeForbidden, "origin not allowed"))
		return
	}
	var user string
	var exp time.Time
	if r.Header.Get("Authorization") != "" {
		var err error
		if user, exp, err = gw.bearer(r); err != nil {
			gw.httpError(w, err)
			return
		}
	}
	// A session authenticated by header joins the hub before the upgrade completes, so every event
	// appended after the client sees its socket open reaches it (they wait in its queue meanwhile).
	var s *session
	if user != "" {
		s = newSession(gw, nil, user, exp, r.UserAgent())
		gw.hub.add(s)
	}
	hj := &hijacker{ResponseWriter: w}
	conn, err := gw.upgrader.Upgrade(hj, r, nil)
	if err != nil {
		if s != nil {
			gw.hub.remove(s)
		}
		return // the upgrader has answered
	}
	conn.SetReadLimit(schemas.MaxFrameBytes)
	if s == nil {
		user, exp, id, err := gw.firstFrameLogin(conn)
		if err != nil {
			gw.refuse(conn, id, err)
			return
		}
		s = newSession(gw, conn, user, exp, r.UserAgent())
		gw.hub.add(s) // before the ok, so events after it reach the session
		s.reply(schemas.OKFrame{Cmd: schemas.CmdOK, ID: id})
	}
	s.setConn(conn, hj.conn)
	gw.book.track(s.user)
	gw.reportConn(s, schemas.ConnConnect)
	s.live.Store(true)
	if gw.draining.Load() {
		s.close(closeGoingAway, "server shutting down", true)
	}
	if gw.connects.reaches(time.Now(), burstConnects) {
		platform.DenseGC(burstGC)
	}
	gw.sessions.Add(1)
	gw.metrics.connections.Inc()
	gw.metrics.connsTotal.WithLabelValues("websocket").Inc()
	// The session runs on goroutines of its own and this handler returns: net/http then lets go
	// of what it keeps for the request while its handler runs (the connection's 4 KB read and
	// write buffers, the request, a grown stack), about half an idle connection's memory.
	go gw.runSession(s)
}

// runSession runs an upgraded session until its socket closes: the read pump on this goroutine,
// the writer on another while it has work.
func (gw *Gateway) runSession(s *session) {
	defer gw.book.untrack(s.user)
	defer gw.sessions.Done()
	defer func() {
		gw.hub.remove(s)
		gw.metrics.connections.Dec()
		gw.reportConn(s, schemas.ConnDisconnect)
	}()
	// Not stopped, so that once it has fired it is garbage (a release after the end is harmless).
	time.AfterFunc(gw.cfg.SyncGrace, s.releaseHold)
	s.startWriter()
	s.readPump()
	<-s.done
}

// firstFrameLogin authenticates a socket opened without a token: its first frame must be login.
func (gw *Gateway) firstFrameLogin(conn *websocket.Conn) (user string, exp time.Time, id string, err error) {
	_ = conn.SetReadDeadline(time.Now().Add(gw.cfg.AuthTimeout))
	typ, data, err := conn.ReadMessage()
	if err != nil {
		if errors.Is(err, websocket.ErrReadLimit) {
			return "", time.Time{}, "", schemas.Errorf(schemas.CodeTooLarge, "frame larger than 64 KiB")
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "", time.Time{}, "", schemas.Errorf(schemas.CodeUnauthorized, "no login frame in time")
		}
		return "", time.Time{}, "", err
	}
	f, perr := decodeFrame(data)
	if perr != nil || typ != websocket.TextMessage || f.Cmd != schemas.CmdLogin {
		return "", time.Time{}, f.ID, schemas.Errorf(schemas.CodeUnauthorized, "log in first: send {\"cmd\":\"login\",\"token\":...}")
	}
	user, exp, err = gw.tokens.Verify(f.Token)
	if err != nil {
		return "", time.Time{}, f.ID, schemas.Errorf(schemas.CodeUnauthorized, "invalid or expired token")
	}
	return user, exp, f.ID, nil
}

// refuse answers an unauthenticated socket with an error frame and closes it (1008, or 1009 for a
// frame too big).
func (gw *Gateway) refuse(conn *websocket.Conn, id string, err error) {
	defer conn.Close()
	pe := asProtocolError(err)
	code := closePolicy
	switch pe.Code {
	case schemas.CodeTooLarge:
		code = closeTooBig
	case schemas.CodeUnauthorized:
	default:
		return // the socket failed; nobody to tell
	}
	gw.metrics.errors.WithLabelValues(string(pe.Code)).Inc()
	gw.metrics.closes.WithLabelValues(strconv.Itoa(code)).Inc()
	deadline := time.Now().Add(time.Second)
	_ = conn.SetWriteDeadline(deadline)
	if data, err := marshalFrame(schemas.ErrorFrame{Cmd: schemas.CmdError, ID: id, ErrCode: pe.Code, ErrMsg: pe.Msg}); err == nil {
		_ = conn.WriteMessage(websocket.TextMessage, data)
	}
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, pe.Msg), deadline)
}

func truncateRunes(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}
