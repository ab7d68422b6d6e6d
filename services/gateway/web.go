package gateway

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// The browser client: static files embedded from web/, served at / (index.html) and /<file>.
// They are not fingerprinted, so browsers revalidate them on every load (Cache-Control: no-cache)
// against a strong ETag, which costs a 304 when nothing changed.

//go:embed web
var webFiles embed.FS

// webCSP is the Content-Security-Policy of the client's pages: index.html carries the same in a
// meta element (except frame-ancestors, which only a header can set).
const webCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; " +
	"media-src 'self' blob:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; " +
	"frame-ancestors 'none'; form-action 'self'"

// webTypes are the content types of the client's files, by extension (not the system's MIME
// table, which varies between hosts).
var webTypes = map[string]string{
	".html":        "text/html; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".mjs":         "text/javascript; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".json":        "application/json",
	".webmanifest": "application/manifest+json",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".ico":         "image/x-icon",
	".webp":        "image/webp",
	".txt":         "text/plain; charset=utf-8",
	".woff2":       "font/woff2",
}

type webAsset struct {
	name  string
	data  []byte
	ctype string
	etag  string
}

func (a *webAsset) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	h.Set("Content-Security-Policy", webCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	// ServeContent answers If-None-Match (304), Range and HEAD.
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.data))
}

// mountWeb serves every embedded file at its path under /, and index.html at / itself.
func (gw *Gateway) mountWeb(mux *http.ServeMux) {
	root, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic(err) // the embed is part of the binary
	}
	err = fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		ctype, ok := webTypes[strings.ToLower(path.Ext(p))]
		if !ok {
			ctype = "application/octet-stream"
		}
		sum := sha256.Sum256(data)
		a := &webAsset{name: p, data: data, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		mux.Handle("GET /"+p, a)
		if p == "index.html" {
			mux.Handle("GET /{$}", a)
		}
		return nil
	})
	if err != nil {
		panic(err)
	}
}
