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

// String binds a string option.
func (f *Flags) String(p *string, name, env, def, usage string) {
	if v, ok := os.LookupEnv(env); ok {
		def = v
	}
	f.fs.StringVar(p, name, def, f.usage(env, usage))
}

// Bool binds a boolean option.
func (f *Flags) Bool(p *bool, name, env string, def bool, usage string) {
	if v, ok := os.LookupEnv(env); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s: %w", env, err))
		} else {
			def = b
		}
	}
	f.fs.BoolVar(p, name, def, f.usage(env, usage))
}

// Int binds an integer option.
func (f *Flags) Int(p *int, name, env string, def int, usage string) {
	if v, ok := os.LookupEnv(env); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s: %w", env, err))
		} else {
			def = n
		}
	}
	f.fs.IntVar(p, name, def, f.usage(env, usage))
}

// Int64 binds a 64-bit integer option.
func (f *Flags) Int64(p *int64, name, env string, def int64, usage string) {
	if v, ok := os.LookupEnv(env); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s: %w", env, err))
		} else {
			def = n
		}
	}
	f.fs.Int64Var(p, name, def, f.usage(env, usage))
}

// Float binds a floating-point option.
func (f *Flags) Float(p *float64, name, env string, def float64, usage string) {
	if v, ok := os.LookupEnv(env); ok {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s: %w", env, err))
		} else {
			def = n
		}
	}
	f.fs.Float64Var(p, name, def, f.usage(env, usage))
}

// Duration binds a duration option ("250ms", "24h").
func (f *Flags) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	if v, ok := os.LookupEnv(env); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s: %w", env, err))
		} else {
			def = d
		}
	}
	f.fs.DurationVar(p, name, def, f.usage(env, usage))
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
