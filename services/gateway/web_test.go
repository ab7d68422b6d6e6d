package gateway_test

import (
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestWebClientIsServed(t *testing.T) {
	e := newEnv(t, 1, nil)
	base := e.gws[0].URL
	// (The files are compared with the embedded copy's shape, not byte for byte with the ones on
	// disk, which may have been edited since the test binary was built.)
	st, hdr, index := httpRaw(t, "GET", base+"/", "", nil, nil)
	if st != 200 || !strings.Contains(string(index), `<script type="module" src="app.js">`) {
		t.Fatalf("GET /: %d, %d bytes", st, len(index))
	}
	csp := hdr.Get("Content-Security-Policy")
	for k, v := range map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"X-Content-Type-Options": "nosniff",
		"Cache-Control":          "no-cache",
	} {
		if hdr.Get(k) != v {
			t.Errorf("%s: %q, want %q", k, hdr.Get(k), v)
		}
	}
	want := "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; " +
		"connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
	if !strings.HasPrefix(csp, want) {
		t.Errorf("CSP %q, want %q first", csp, want)
	}
	// Every directive of the page's meta CSP is in the header, unchanged.
	m := regexp.MustCompile(`http-equiv="Content-Security-Policy" content="([^"]+)"`).FindSubmatch(index)
	if m == nil {
		t.Fatal("index.html has no meta CSP")
	}
	directives := map[string]bool{}
	for _, d := range strings.Split(csp, ";") {
		directives[strings.TrimSpace(d)] = true
	}
	for _, d := range strings.Split(string(m[1]), ";") {
		if !directives[strings.TrimSpace(d)] {
			t.Errorf("meta CSP directive %q is not in the header %q", d, csp)
		}
	}
	files, err := os.ReadDir("web")
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".html": "text/html; charset=utf-8"}
	for _, f := range files {
		name := f.Name()
		want, ok := types[name[strings.LastIndex(name, "."):]]
		if !ok {
			continue
		}
		st, hdr, body := httpRaw(t, "GET", base+"/"+name, "", nil, nil)
		if st != 200 || hdr.Get("Content-Type") != want || len(body) == 0 || hdr.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("%s: %d %q, %d bytes", name, st, hdr.Get("Content-Type"), len(body))
		}
		// Revalidation: the same ETag answers 304.
		etag := hdr.Get("ETag")
		if etag == "" {
			t.Fatalf("%s: no ETag", name)
		}
		if st, _, body := httpRaw(t, "GET", base+"/"+name, "", nil, http.Header{"If-None-Match": {etag}}); st != 304 || len(body) != 0 {
			t.Fatalf("%s revalidated: %d", name, st)
		}
	}
	if st, hdr, body := httpRaw(t, "HEAD", base+"/", "", nil, nil); st != 200 || len(body) != 0 || hdr.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("HEAD /: %d", st)
	}
	for _, p := range []string{"/nope.js", "/v1/nope", "/web/app.js", "/app.js/x"} {
		st, hdr, body := httpRaw(t, "GET", base+p, "", nil, nil)
		if st != 404 || hdr.Get("Content-Type") != "application/json" || !strings.Contains(string(body), `"errCode":"not_found"`) {
			t.Fatalf("GET %s: %d %q %s", p, st, hdr.Get("Content-Type"), body)
		}
	}
}
