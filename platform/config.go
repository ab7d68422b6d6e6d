package platform

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Flags binds configuration to command-line flags whose defaults come from CHAT_* environment
// variables, so "flag > env > built-in default" holds everywhere. Every option is listed, with its
// variable and default, by -help.
type Flags struct {
	fs   *flag.FlagSet
	errs []error
}

// NewFlags wraps fs.
func NewFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{fs: fs}
	return f
}

// Err reports environment variables that could not be parsed.
func (f *Flags) Err() error {
	if len(f.errs) == 0 {
		return nil
	}
	return fmt.Errorf("config: %v", f.errs)
}

func (f *Flags) usage(env, u string) string { return u + " (env " + env + ")" }

// envOr is def, or the value of the environment variable env parsed by parse; a value that does not
// parse is recorded for Err and leaves def.
func envOr[T any](f *Flags, env string, def T, parse func(string) (T, error)) T {
	v, ok := os.LookupEnv(env)
	if !ok {
		return def
	}
	x, err := parse(v)
	if err != nil {
		f.errs = append(f.errs, fmt.Errorf("%s: %w", env, err))
		return def
	}
	return x
}

// String binds a string option.
func (f *Flags) String(p *string, name, env, def, usage string) {
	f.fs.StringVar(p, name, envOr(f, env, def, func(s string) (string, error) { return s, nil }), f.usage(env, usage))
}

// Bool binds a boolean option.
func (f *Flags) Bool(p *bool, name, env string, def bool, usage string) {
	f.fs.BoolVar(p, name, envOr(f, env, def, strconv.ParseBool), f.usage(env, usage))
}

// Int binds an integer option.
func (f *Flags) Int(p *int, name, env string, def int, usage string) {
	f.fs.IntVar(p, name, envOr(f, env, def, strconv.Atoi), f.usage(env, usage))
}

// Int64 binds a 64-bit integer option.
func (f *Flags) Int64(p *int64, name, env string, def int64, usage string) {
	parse := func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }
	f.fs.Int64Var(p, name, envOr(f, env, def, parse), f.usage(env, usage))
}

// Float binds a floating-point option.
func (f *Flags) Float(p *float64, name, env string, def float64, usage string) {
	parse := func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }
	f.fs.Float64Var(p, name, envOr(f, env, def, parse), f.usage(env, usage))
}

// Duration binds a duration option ("250ms", "24h").
func (f *Flags) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	f.fs.DurationVar(p, name, envOr(f, env, def, time.ParseDuration), f.usage(env, usage))
}

// List binds a comma-separated list option.
func (f *Flags) List(p *[]string, name, env, def, usage string) {
	if v, ok := os.LookupEnv(env); ok {
		def = v
	}
	*p = SplitList(def)
	f.fs.Func(name, f.usage(env, usage)+" (comma-separated, default \""+def+"\")", func(s string) error {
		*p = SplitList(s)
		return nil
	})
}

// SplitList splits a comma-separated list, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
