package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// A scenario is one self-contained part of the suite on the child-process servers (proc.go): it
// starts what it needs, measures, stops everything, and returns its result (written under its name
// in the results JSON) and a text summary for the terminal. Each registers itself from its own file.
type scenario struct {
	name  string
	order int // scenarios run in this order
	doc   string
	run   func(quick bool) (scenarioResult, error)
}

// scenarioResult is what a scenario measured.
type scenarioResult interface {
	// print writes the scenario's table for the terminal.
	print(w io.Writer)
	// failed says whether a figure shows something broken (lost or repeated messages, a dropped
	// client): the run exits 1. A missed target is not a failure.
	failed() bool
}

var scenarios = map[string]*scenario{}

func register(s *scenario) {
	if scenarios[s.name] != nil {
		panic("scenario registered twice: " + s.name)
	}
	scenarios[s.name] = s
}

// selectScenarios resolves -scenarios: "all", "none" or a comma-separated list of names.
func selectScenarios(spec string) ([]*scenario, error) {
	var out []*scenario
	switch spec {
	case "none", "":
		return nil, nil
	case "all":
		for _, s := range scenarios {
			out = append(out, s)
		}
	default:
		for _, name := range strings.Split(spec, ",") {
			s := scenarios[strings.TrimSpace(name)]
			if s == nil {
				return nil, fmt.Errorf("-scenarios: no scenario %q (have %s)", name, strings.Join(scenarioNames(), ", "))
			}
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].order < out[j].order })
	return out, nil
}

func scenarioNames() []string {
	var names []string
	for n := range scenarios {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// scenarioRun is one scenario's entry in the results.
type scenarioRun struct {
	Seconds float64        `json:"seconds"`
	Error   string         `json:"error,omitempty"`
	Result  scenarioResult `json:"result,omitempty"`
}
