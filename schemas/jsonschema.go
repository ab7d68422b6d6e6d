package schemas

import (
	"embed"
	"io/fs"
	"sort"
)

// SchemaBaseURL is the base of every JSON Schema's $id: the schema in file f has $id SchemaBaseURL+f.
const SchemaBaseURL = "https://eventchat.dev/schemas/v1/"

// SchemaFS holds the JSON Schemas (draft 2020-12) of the stored events, the client and server frames
// and the HTTP bodies of protocol v1, under jsonschema/: event.<type>.json, client.<cmd>.json,
// server.<cmd>.json, http.<endpoint>.<request|response>.json, the messages services exchange over
// NATS, nats.<service>.<message>.json, the values of KV buckets, kv.<bucket>.json, and the shared
// defs.json they reference.
//
//go:embed jsonschema/*.json
var SchemaFS embed.FS

// SchemaFiles lists the paths in SchemaFS of all the schemas (defs.json included), sorted.
func SchemaFiles() []string {
	names, err := fs.Glob(SchemaFS, "jsonschema/*.json")
	if err != nil {
		panic("schemas: " + err.Error()) // the pattern is constant and valid
	}
	sort.Strings(names)
	return names
}
