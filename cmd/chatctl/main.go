// Command chatctl is the operator's command-line tool. It talks to the running services over NATS
// only (CHAT_NATS_URL), like every other part of the system.
//
//	chatctl analytics <report> [--since D] [--until D] [--conv C] [--limit N] [--format table|json|csv]
//	chatctl analytics list
//	chatctl help [command]
//
// Exit codes: 0 success; 1 failure (NATS or the answering service unreachable, or a service-side
// error); 2 bad usage or a request the service refused as bad.
package main

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// command is one subcommand. Later commands (replay, admin) are added to commands.
type command struct {
	name, summary string
	usage         string
	run           func(args []string, stdout, stderr io.Writer) int
}

var commands []command

func init() {
	commands = []command{
		{name: "analytics", summary: "run an analytics report on the ClickHouse archive", usage: analyticsUsage, run: analyticsCmd},
		{name: "help", summary: "show help for chatctl or a command", usage: "usage: chatctl help [command]\n", run: helpCmd},
	}
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run runs chatctl with args (without the program name) and returns its exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		writeUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		return helpCmd(args[1:], stdout, stderr)
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "chatctl: unknown command %q\n\n", args[0])
	writeUsage(stderr)
	return exitUsage
}

func writeUsage(w io.Writer) {
	fmt.Fprint(w, "chatctl: the operator's CLI for eventchat (reaches the services over NATS).\n\nusage: chatctl <command> [arguments]\n\ncommands:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	_ = tw.Flush()
	fmt.Fprint(w, "\n`chatctl help <command>` describes a command. NATS: --nats-url (env CHAT_NATS_URL), --nats-creds (env CHAT_NATS_CREDS).\n"+
		"Exit codes: 0 ok, 1 failure (e.g. no service answered), 2 bad usage or bad request.\n")
}

func helpCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		writeUsage(stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			fmt.Fprint(stdout, c.usage)
			return exitOK
		}
	}
	fmt.Fprintf(stderr, "chatctl help: unknown command %q\n", args[0])
	return exitUsage
}
