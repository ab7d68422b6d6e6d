package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
)

var (
	fmtCols = []string{"conv", "messages", "median_ms"}
	fmtRows = [][]any{
		{"g:team", json.Number("12345678901234567890"), nil},
		{"dm:ann:ben", json.Number("7"), json.Number("1500")},
		{`g:"quoted",comma`, json.Number("0"), 2.5},
	}
)

func render(t *testing.T, format string, cols []string, rows [][]any) string {
	t.Helper()
	var b bytes.Buffer
	if err := writeTable(&b, format, cols, rows); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// A table is aligned columns with a header; null is "-"; big counts print exactly.
func TestFormatTable(t *testing.T) {
	got := render(t, "table", fmtCols, fmtRows)
	want := "conv              messages              median_ms\n" +
		"g:team            12345678901234567890  -\n" +
		"dm:ann:ben        7                     1500\n" +
		"g:\"quoted\",comma  0                     2.5\n"
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	if got := render(t, "table", []string{"day", "messages"}, nil); got != "day  messages\n" {
		t.Fatalf("empty table: %q", got)
	}
	if got := render(t, "table", []string{"a"}, [][]any{{"x\ty\nz"}}); got != "a\nx y z\n" {
		t.Fatalf("tab in a value: %q", got)
	}
}

// JSON is an array of objects keyed by column, in column order, numbers as numbers, null as null.
func TestFormatJSON(t *testing.T) {
	got := render(t, "json", fmtCols, fmtRows)
	want := `[
  {"conv": "g:team", "messages": 12345678901234567890, "median_ms": null},
  {"conv": "dm:ann:ben", "messages": 7, "median_ms": 1500},
  {"conv": "g:\"quoted\",comma", "messages": 0, "median_ms": 2.5}
]
`
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	var objs []map[string]any
	dec := json.NewDecoder(strings.NewReader(got))
	dec.UseNumber()
	if err := dec.Decode(&objs); err != nil || len(objs) != 3 || objs[0]["messages"] != json.Number("12345678901234567890") {
		t.Fatalf("decode: %v %v", objs, err)
	}
	if got := render(t, "json", fmtCols, [][]any{}); got != "[]\n" {
		t.Fatalf("empty: %q", got)
	}
	if got := render(t, "json", []string{"a<b"}, [][]any{{"x&y"}}); got != "[\n  {\"a<b\": \"x&y\"}\n]\n" {
		t.Fatalf("escaping: %q", got)
	}
}

// CSV has a header, quotes what needs quoting, and prints null as an empty field.
func TestFormatCSV(t *testing.T) {
	got := render(t, "csv", fmtCols, fmtRows)
	want := "conv,messages,median_ms\n" +
		"g:team,12345678901234567890,\n" +
		"dm:ann:ben,7,1500\n" +
		"\"g:\"\"quoted\"\",comma\",0,2.5\n"
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	recs, err := csv.NewReader(strings.NewReader(got)).ReadAll()
	if err != nil || len(recs) != 4 || recs[3][0] != `g:"quoted",comma` {
		t.Fatalf("read back: %q %v", recs, err)
	}
	if got := render(t, "csv", []string{"day", "messages"}, nil); got != "day,messages\n" {
		t.Fatalf("empty: %q", got)
	}
}

func TestFormatRejectsMalformedAnswers(t *testing.T) {
	var b bytes.Buffer
	if err := writeTable(&b, "json", []string{"a", "b"}, [][]any{{"x"}}); err == nil {
		t.Fatal("a short row was accepted")
	}
	if err := writeTable(&b, "xml", []string{"a"}, nil); err == nil {
		t.Fatal("an unknown format was accepted")
	}
}
