package analytics

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// normalize drops SQL line comments and collapses white space.
func normalize(sql string) string {
	var lines []string
	for _, l := range strings.Split(sql, "\n") {
		if i := strings.Index(l, "--"); i >= 0 {
			l = l[:i]
		}
		lines = append(lines, l)
	}
	return strings.Join(strings.Fields(strings.Join(lines, " ")), " ")
}

// docs/analytics.md documents exactly the reports Run knows, each with the statement Run sends
// (every optional filter present, database "chat").
func TestDocsShowTheSQL(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/analytics.md")
	if err != nil {
		t.Fatal(err)
	}
	var headings []string
	for _, m := range regexp.MustCompile("(?m)^## `([a-z-]+)`$").FindAllStringSubmatch(string(doc), -1) {
		headings = append(headings, m[1])
	}
	if !slices.Equal(headings, Names()) {
		t.Fatalf("docs describe %v, Run knows %v", headings, Names())
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(doc), -1) {
		blocks = append(blocks, normalize(m[1]))
	}
	all := filter{hasSince: true, hasUntil: true, sinceMs: 1, untilMs: 2, conv: "g:x", limit: 20}
	for _, r := range reports {
		q, args := r.sql("chat", all)
		if !slices.Contains(blocks, normalize(q)) {
			t.Errorf("docs/analytics.md lacks the SQL of %s as run:\n%s", r.name, q)
		}
		if n := strings.Count(q, "?"); n != len(args) {
			t.Errorf("%s: %d placeholders, %d arguments", r.name, n, len(args))
		}
		// Without the optional filters, no placeholder is left without its value.
		q, args = r.sql("chat", filter{limit: 20})
		if n := strings.Count(q, "?"); n != len(args) {
			t.Errorf("%s (no filter): %d placeholders, %d arguments", r.name, n, len(args))
		}
	}
}
