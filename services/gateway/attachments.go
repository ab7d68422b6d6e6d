package gateway

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/eventchat/chat/schemas"
	"github.com/nats-io/nats.go/jetstream"
)

// Attachments (a protocol extension): files uploaded over HTTP into the JetStream object store
// chat_attachments, one object per attachment, named by its id ("a" + 22 random [0-9A-Za-z]), with metadata
// {conv, uploader, contentType, size, name, sha256}. An attachment belongs to one conversation:
// only its members may upload to it, download it, or send a message that refers to it.
//
//	POST /v1/attachments?conv=<conv>&name=<file name>   body: the bytes; Content-Type: their type
//	GET|HEAD /v1/attachments/{id}

const (
	maxAttachmentName = 255 // bytes
	sniffLen          = 512 // what http.DetectContentType looks at
	// attachmentMaxAge is how long a browser may keep an attachment (they never change).
	attachmentMaxAge = 24 * 60 * 60
	// uploadTimeout bounds the reading of an upload's body.
	uploadTimeout = 10 * time.Minute
)

// newAttachmentID makes an attachment id: "a" and 22 characters of [0-9A-Za-z] from crypto/rand
// (about 131 bits: ids cannot be guessed, unlike NUIDs, which are sequential within a process).
func newAttachmentID() string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	id := make([]byte, 1, 23)
	id[0] = schemas.AttachmentIDPrefix[0]
	var buf [32]byte
	for len(id) < cap(id) {
		_, _ = cryptorand.Read(buf[:]) // never fails (crypto/rand)
		for _, b := range buf {
			if b < 248 && len(id) < cap(id) { // 248 = 4*62: no modulo bias
				id = append(id, alphabet[b%62])
			}
		}
	}
	return string(id)
}

// attachmentTypeSet parses the accepted content types: bare media types, without parameters.
func attachmentTypeSet(types []string) (map[string]bool, error) {
	set := map[string]bool{}
	for _, t := range types {
		mt, params, err := mime.ParseMediaType(t)
		if err != nil || len(params) > 0 || !strings.Contains(mt, "/") {
			return nil, fmt.Errorf("attachment-types: %q is not a media type like image/png", t)
		}
		set[mt] = true
	}
	if len(set) == 0 {
		return nil, errors.New("attachment-types is empty")
	}
	return set, nil
}

// sanitizeFileName makes a client's file name safe to store and to send back in a header: the
// last path element, valid UTF-8, no control or bidirectional-override characters, trimmed, at
// most 255 bytes (the extension kept), "file" when nothing is left.
func sanitizeFileName(name string) string {
	name = strings.ToValidUTF8(name, "\uFFFD")
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r >= '\u202a' && r <= '\u202e' || r >= '\u2066' && r <= '\u2069' || r == '\u200e' || r == '\u200f' {
			return -1
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	if len(name) > maxAttachmentName {
		ext := path.Ext(name)
		if len(ext) > 16 {
			ext = ""
		}
		name = truncateBytes(name[:len(name)-len(ext)], maxAttachmentName-len(ext)) + ext
	}
	if name == "" || name == "." || name == ".." {
		return "file"
	}
	return name
}

// truncateBytes cuts s to at most n bytes at a character boundary.
func truncateBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// contentDisposition is the Content-Disposition of a download: inline for images (shown in the
// client), attachment otherwise; the name in RFC 5987 form.
func contentDisposition(ctype, name string) string {
	kind := "attachment"
	if strings.HasPrefix(ctype, "image/") {
		kind = "inline"
	}
	var b strings.Builder
	b.WriteString(kind)
	b.WriteString("; filename*=UTF-8''")
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// refuseType answers 415 with errCode bad_request: the body's type is not one that is accepted.
func (gw *Gateway) refuseType(w http.ResponseWriter, msg string) {
	gw.metrics.errors.WithLabelValues(string(schemas.CodeBadRequest)).Inc()
	writeJSON(w, http.StatusUnsupportedMediaType, schemas.HTTPError{ErrCode: schemas.CodeBadRequest, ErrMsg: msg})
}

// requireSender answers as sending a message to conv would for user: forbidden unless a member
// now, not_found for a direct conversation with a user that does not exist.
func (gw *Gateway) requireSender(ctx context.Context, user string, conv schemas.Conv) error {
	if err := gw.requireMember(ctx, user, conv); err != nil {
		return err
	}
	if conv.IsDirect() {
		ok, err := gw.accounts.Exists(ctx, conv.Other(user))
		if err != nil {
			return err
		}
		if !ok {
			return schemas.Errorf(schemas.CodeNotFound, "no such user")
		}
	}
	return nil
}

// uploadReader counts and hashes an upload as the object store reads it; at the end it completes
// the object's metadata, which the store writes after the last read.
type uploadReader struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	meta map[string]string
}

func (u *uploadReader) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	u.h.Write(p[:n])
	u.n += int64(n)
	if err == io.EOF {
		u.meta[schemas.AttachmentMetaSize] = strconv.FormatInt(u.n, 10)
		u.meta[schemas.AttachmentMetaSHA256] = hex.EncodeToString(u.h.Sum(nil))
	}
	return n, err
}

func (gw *Gateway) handleUpload(w http.ResponseWriter, r *http.Request) {
	result := "refused"
	defer func() { gw.metrics.uploads.WithLabelValues(result).Inc() }()
	fail := func(err error) {
		if c := asProtocolError(err).Code; c == schemas.CodeInternal || c == schemas.CodeUnavailable {
			result = "error"
		}
		gw.httpError(w, err)
	}
	if gw.draining.Load() {
		fail(schemas.Errorf(schemas.CodeUnavailable, "server shutting down"))
		return
	}
	user, _, err := gw.bearer(r)
	if err != nil {
		fail(err)
		return
	}
	q := r.URL.Query()
	conv, err := schemas.ParseConv(q.Get("conv"))
	if err != nil {
		fail(badRequest("conv must be a conversation id"))
		return
	}
	ctx := r.Context()
	if err := gw.requireSender(ctx, user, conv); err != nil {
		fail(err)
		return
	}
	maxBytes := gw.cfg.AttachmentMaxBytes
	if r.ContentLength > maxBytes {
		fail(schemas.Errorf(schemas.CodeTooLarge, fmt.Sprintf("attachment larger than %d bytes", maxBytes)))
		return
	}
	ctype := "application/octet-stream"
	if h := r.Header.Get("Content-Type"); h != "" {
		mt, _, err := mime.ParseMediaType(h)
		if err != nil {
			gw.refuseType(w, "unreadable Content-Type")
			return
		}
		ctype = mt
	}
	if !gw.attachTypes[ctype] {
		gw.refuseType(w, "attachments of type "+ctype+" are not accepted")
		return
	}
	name := sanitizeFileName(q.Get("name"))
	// The server has no read timeout for bodies (long polls): an upload gets a bounded time.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(uploadTimeout))

	// The size limit holds while reading: a body past it fails the read (and the store purges
	// what it had written).
	body := http.MaxBytesReader(w, r.Body, maxBytes)
	tooLarge := func(err error) bool {
		var mb *http.MaxBytesError
		return errors.As(err, &mb)
	}
	head := make([]byte, sniffLen)
	n, err := io.ReadFull(body, head)
	switch {
	case tooLarge(err):
		fail(schemas.Errorf(schemas.CodeTooLarge, fmt.Sprintf("attachment larger than %d bytes", maxBytes)))
		return
	case err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF):
		fail(badRequest("unreadable body"))
		return
	case n == 0:
		fail(badRequest("empty attachment"))
		return
	}
	head = head[:n]
	if strings.HasPrefix(ctype, "image/") {
		if got, _, _ := mime.ParseMediaType(http.DetectContentType(head)); got != ctype {
			gw.refuseType(w, "the file is not an image of type "+ctype+" (its bytes look like "+got+")")
			return
		}
	}

	id := newAttachmentID()
	meta := jetstream.ObjectMeta{Name: id, Metadata: map[string]string{
		schemas.AttachmentMetaConv: conv.String(), schemas.AttachmentMetaUploader: user,
		schemas.AttachmentMetaContentType: ctype, schemas.AttachmentMetaName: name,
	}}
	ur := &uploadReader{r: io.MultiReader(bytes.NewReader(head), body), h: sha256.New(), meta: meta.Metadata}
	info, err := gw.attachments.Put(ctx, meta, ur)
	switch {
	case tooLarge(err):
		fail(schemas.Errorf(schemas.CodeTooLarge, fmt.Sprintf("attachment larger than %d bytes", maxBytes)))
		return
	case err != nil && ctx.Err() != nil:
		result = "gone"
		return // the client went away; the store purged the partial object
	case err != nil:
		fail(fmt.Errorf("store attachment: %w", err))
		return
	case int64(info.Size) != ur.n:
		fail(fmt.Errorf("store attachment: stored %d bytes of %d", info.Size, ur.n))
		return
	}
	sum := ur.h.Sum(nil)
	if info.Digest != "SHA-256="+base64.URLEncoding.EncodeToString(sum) {
		fail(fmt.Errorf("store attachment: digest %s differs from the upload's", info.Digest))
		return
	}
	if info.Metadata[schemas.AttachmentMetaSHA256] == "" {
		// The store wrote the metadata before the end of the upload: complete it.
		if err := gw.attachments.UpdateMeta(ctx, id, meta); err != nil {
			fail(fmt.Errorf("store attachment metadata: %w", err))
			return
		}
	}
	result = "ok"
	gw.metrics.uploadBytes.Add(float64(ur.n))
	writeJSON(w, http.StatusCreated, schemas.AttachmentResponse{ID: id, ContentType: ctype, Size: ur.n, Name: name})
}

// attachmentInfo reads an attachment's description; an unknown id is not_found.
func (gw *Gateway) attachmentInfo(ctx context.Context, id string) (*jetstream.ObjectInfo, schemas.Conv, error) {
	info, err := gw.attachments.GetInfo(ctx, id)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, schemas.Conv{}, errNoAttachment
	}
	if err != nil {
		return nil, schemas.Conv{}, fmt.Errorf("attachment %s: %w", id, err)
	}
	conv, err := schemas.ParseConv(info.Metadata[schemas.AttachmentMetaConv])
	if err != nil {
		gw.log.Error("attachment without a conversation", "id", id)
		return nil, schemas.Conv{}, errNoAttachment
	}
	return info, conv, nil
}

var article = map[string]string{"image": "an image", "audio": "an audio", "file": "a file"}

var errNoAttachment = schemas.Errorf(schemas.CodeNotFound, "no such attachment")

func (gw *Gateway) handleDownload(w http.ResponseWriter, r *http.Request) {
	user, _, err := gw.bearer(r)
	if err != nil {
		gw.httpError(w, err)
		return
	}
	id := r.PathValue("id")
	if !schemas.ValidAttachmentID(id) {
		gw.httpError(w, badRequest("invalid attachment id"))
		return
	}
	ctx := r.Context()
	info, conv, err := gw.attachmentInfo(ctx, id)
	if err != nil {
		gw.httpError(w, err)
		return
	}
	if err := gw.requireMember(ctx, user, conv); err != nil {
		gw.httpError(w, err)
		return
	}
	var obj jetstream.ObjectResult
	if r.Method != http.MethodHead {
		if obj, err = gw.attachments.Get(ctx, id); err != nil {
			if errors.Is(err, jetstream.ErrObjectNotFound) {
				err = errNoAttachment
			}
			gw.httpError(w, err)
			return
		}
		defer obj.Close()
	}
	ctype := info.Metadata[schemas.AttachmentMetaContentType]
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	name := info.Metadata[schemas.AttachmentMetaName]
	if name == "" {
		name = "file"
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.FormatUint(info.Size, 10))
	h.Set("Content-Disposition", contentDisposition(ctype, name))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "private, max-age="+strconv.Itoa(attachmentMaxAge))
	h.Set("Vary", "Authorization")
	// Opened on its own, the file is inert: no scripts, no plugins, no embedding in other pages.
	h.Set("Content-Security-Policy", "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; sandbox")
	if sum := info.Metadata[schemas.AttachmentMetaSHA256]; sum != "" {
		h.Set("ETag", `"`+sum+`"`)
	}
	w.WriteHeader(http.StatusOK)
	if obj == nil {
		return
	}
	n, err := io.Copy(w, obj)
	gw.metrics.downloadBytes.Add(float64(n))
	if err != nil {
		if ctx.Err() == nil {
			gw.log.Error("attachment download", "id", id, "sent", n, "err", err)
		}
		panic(http.ErrAbortHandler) // the client sees a cut response, never a short one
	}
	gw.metrics.downloads.Inc()
}

// checkAttachmentRef checks the msg of an image, audio or file message (or of an edit of one):
// an attachment id must name an attachment of the same conversation whose content type fits the
// message type (image/* for image, audio/* for audio, any for file); anything else must be an
// http(s) URL. Text messages are not checked.
func (gw *Gateway) checkAttachmentRef(ctx context.Context, conv schemas.Conv, msgType, msg string) error {
	if msgType == "" || msgType == "text" {
		return nil
	}
	if schemas.ValidAttachmentID(msg) {
		info, aconv, err := gw.attachmentInfo(ctx, msg)
		if errors.Is(err, errNoAttachment) {
			return badRequest("no such attachment: upload it first")
		}
		if err != nil {
			return err
		}
		if aconv != conv {
			return badRequest("the attachment belongs to another conversation")
		}
		ctype := info.Metadata[schemas.AttachmentMetaContentType]
		if msgType != "file" && !strings.HasPrefix(ctype, msgType+"/") {
			return badRequest(fmt.Sprintf("%s message needs an %s/* attachment, not %s", article[msgType], msgType, ctype))
		}
		return nil
	}
	if u, err := url.Parse(msg); err == nil && slices.Contains([]string{"http", "https"}, strings.ToLower(u.Scheme)) && u.Host != "" {
		return nil
	}
	return badRequest(fmt.Sprintf("the msg of %s message must be an attachment id or an http(s) URL", article[msgType]))
}
