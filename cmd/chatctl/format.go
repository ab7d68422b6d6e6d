package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// writeTable prints a result table in format: "table" (aligned columns), "json" (an array of
// objects keyed by column, in column order) or "csv" (a header, then the rows). A null prints as
// "-" in a table, "" in CSV and null in JSON.
func writeTable(w io.Writer, format string, cols []string, rows [][]any) error {
	for i, r := range rows {
		if len(r) != len(cols) {
			return fmt.Errorf("malformed answer: row %d has %d values for %d columns", i+1, len(r), len(cols))
		}
	}
	switch format {
	case "table":
		return writeAligned(w, cols, rows)
	case "json":
		return writeJSON(w, cols, rows)
	case "csv":
		return writeCSV(w, cols, rows)
	}
	return fmt.Errorf("unknown format %q", format)
}

// text is a value as a table or CSV cell.
func text(v any, null string) string {
	switch x := v.(type) {
	case nil:
		return null
	case string:
		return x
	case json.Number:
		return x.String()
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 32)
	case bool:
		return strconv.FormatBool(x)
	}
	if s, ok := v.(fmt.Stringer); ok {
		return s.String()
	}
	switch v.(type) {
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(v)
	}
	b, err := json.Marshal(v) // arrays, objects
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func writeAligned(w io.Writer, cols []string, rows [][]any) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(cells []string) {
		for i, c := range cells {
			// A tab or newline inside a value would break the alignment.
			cells[i] = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	line(append([]string(nil), cols...))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, v := range r {
			cells[i] = text(v, "-")
		}
		line(cells)
	}
	return tw.Flush()
}

func writeCSV(w io.Writer, cols []string, rows [][]any) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(cols); err != nil {
		return err
	}
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, v := range r {
			cells[i] = text(v, "")
		}
		if err := cw.Write(cells); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// jsonText encodes v without escaping <, > and &.
func jsonText(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func writeJSON(w io.Writer, cols []string, rows [][]any) error {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, r := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n  {")
		for j, v := range r {
			if j > 0 {
				b.WriteString(", ")
			}
			k, err := jsonText(cols[j])
			if err != nil {
				return err
			}
			val, err := jsonText(v)
			if err != nil {
				return err
			}
			b.Write(k)
			b.WriteString(": ")
			b.Write(val)
		}
		b.WriteByte('}')
	}
	if len(rows) > 0 {
		b.WriteByte('\n')
	}
	b.WriteString("]\n")
	_, err := w.Write(b.Bytes())
	return err
}
