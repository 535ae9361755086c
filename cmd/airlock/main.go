// Command airlock is a pull-through proxy for OCI / Docker registries with a
// quarantine gate. `airlock serve` runs it; the other subcommands talk to a
// running instance's admin API.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `airlock: a pull-through registry proxy with a quarantine gate

Usage:
  airlock serve [--config airlock.yaml]     run the proxy (embedded defaults without a file)
  airlock version                           print the version
  airlock images list [--state STATE] [--repo REPO]
                                            list images Airlock knows
  airlock images show IMAGE                 show one image with its audit trail
  airlock approve IMAGE [--reason TEXT]     approve an image (serve it)
  airlock revoke IMAGE [--reason TEXT] [--allow-fallback]
                                            revoke an image (stop serving it at once); by
                                            tag, the tag is refused until a newer digest is
                                            approved unless --allow-fallback
  airlock rescan IMAGE [--reason TEXT]      re-run the checks on an image
  airlock audit [--image IMAGE] [--limit N] print the audit log, newest first
  airlock jobs                              list the pipeline queue
  airlock events [--json] [--recent N]      show the webhook event outbox: pending events per
                                            endpoint, failures and next attempts, newest events
  airlock gc [--dry-run] [--json]           purge what retention says and delete unreferenced
                                            content; --dry-run lists it and the bytes it frees
  airlock pin|unpin IMAGE [--reason TEXT]   exempt an image from retention (or not)
  airlock watch add|list|remove             watched repositories: matching tags are checked
                                            upstream and queued before anyone pulls them;
                                            see airlock watch --help
  airlock tokens create|list|revoke         API tokens with a role (viewer, approver, admin,
                                            puller);
                                            see airlock tokens --help
  airlock settings                          the running configuration, secrets redacted (admin)
  airlock images vulns IMAGE                show an image's vulnerabilities and policy decision
  airlock images sbom IMAGE [--format spdx|syft] [--platform P]
                                            print an image's SBOM
  airlock images pulls IMAGE [--json]       show who pulled an image recently, newest first
  airlock cve ID                            list the images affected by a vulnerability
  airlock db import FILE                    install a grype v6 DB archive and rescan approved images
  airlock db status                         show the installed vulnerability DB
  airlock malware reload                    have clamd load its signatures again and rescan approved images
  airlock state migrate|export|import      manage the state store (PostgreSQL schema, moving
                                            a bbolt state to PostgreSQL); see airlock state --help
  airlock keys generate [--dir DIR]         create the enterprise signing key pair (cosign format;
                                            password from $AIRLOCK_KEY_PASSWORD)

IMAGE is <upstream>/<repository>@<digest> or <upstream>/<repository>:<tag>,
e.g. docker.io/library/alpine:3.20.

Admin commands reach the admin API at $AIRLOCK_ADMIN_URL (default
http://127.0.0.1:5001) with the token in $AIRLOCK_ADMIN_TOKEN or --token-file:
the bootstrap admin.token or an API token (airlock tokens create). For an
https admin API (admin.tls): --cacert FILE ($AIRLOCK_CACERT) trusts its CA,
and --cert/--key ($AIRLOCK_CLIENT_CERT, $AIRLOCK_CLIENT_KEY) present a client
certificate. The web console is at <admin URL>/ui/.
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			// What went wrong was already printed (usage, the flag
			// error): "exit status 2" would only add noise.
			os.Exit(int(ee))
		}
		fmt.Fprintln(os.Stderr, "airlock:", err)
		os.Exit(1)
	}
}

// exitError carries a specific exit status; its cause has been printed.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func run(args []string, stdout, stderr io.Writer) error {
	err := dispatch(args, stdout, stderr)
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

func dispatch(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError(2)
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "airlock", version)
		return nil
	case "keys":
		return keysCommand(args[1:], stdout, stderr)
	case "gc", "pin", "unpin":
		return gcCommand(args, stdout, stderr) // gc.go
	case "events":
		return eventsCommand(args[1:], stdout, stderr) // events.go
	case "watch":
		return watchCommand(args[1:], stdout, stderr) // watch.go
	case "tokens":
		return tokensCommand(args[1:], stdout, stderr) // tokens.go
	case "state":
		return stateCommand(args[1:], stdout, stderr)
	case "images", "approve", "revoke", "rescan", "audit", "jobs", "db", "cve", "malware", "settings":
		return adminCommand(args, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// parseFlags parses args with parse (fs.Parse, or parseInterspersed for
// commands that take flags after their arguments). -h or --help prints
// fs's usage to stdout and ends the command successfully (errHelp): asking
// for help is not an error. Any other flag error has been printed by fs,
// with the usage, to stderr and exits with status 2.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer, parse func([]string) error) error {
	if wantsHelp(args) {
		fs.SetOutput(stdout)
		fs.Usage()
		return errHelp
	}
	if err := parse(args); err != nil {
		return exitError(2)
	}
	return nil
}

// wantsHelp reports whether args ask for help before any "--". The flag
// package would print the usage to stderr and fail; help goes to stdout.
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "--h", "-help", "--help":
			return true
		}
	}
	return false
}

// errHelp ends a command whose usage was asked for and printed.
var errHelp = errors.New("help printed")
