package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/retention"
)

// gcCommand runs `airlock gc [--dry-run] [--json]` and `airlock pin|unpin IMAGE`.
func gcCommand(args []string, stdout, stderr io.Writer) error {
	cmd := args[0]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	conn := addAdminFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	dryRun := fs.Bool("dry-run", false, "gc: only list what would be purged and freed")
	reason := fs.String("reason", "", "pin, unpin: why (recorded in the audit log)")
	positional, c, err := conn.parse(fs, args[1:], stdout, 30*time.Minute)
	if err != nil {
		return err
	}
	if cmd == "gc" {
		if len(positional) > 0 {
			return errors.New("usage: airlock gc [--dry-run] [--json]")
		}
		var out retention.Result
		path := "/api/v1/gc"
		if *dryRun {
			path += "?dry_run=true"
		}
		if err := c.do(http.MethodPost, path, nil, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, out)
		}
		return printGC(stdout, out)
	}
	if len(positional) != 1 {
		return fmt.Errorf("usage: airlock %s IMAGE [--reason TEXT]", cmd)
	}
	var out admin.ActionResult
	req := admin.ActionRequest{Image: positional[0], Reason: *reason}
	if err := c.do(http.MethodPost, "/api/v1/"+cmd, req, &out); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, out)
	}
	fmt.Fprintf(stdout, "%s: %s, pinned %v\n", safe(out.Ref.String()), safe(string(out.State)), out.Pinned)
	return nil
}

// printGC prints a gc result: the purges, then what the sweep freed.
func printGC(w io.Writer, r retention.Result) error {
	verb, freed := "purged", "freed"
	if r.DryRun {
		verb, freed = "would purge", "would free"
	}
	var rows [][]string
	for _, p := range r.Purges {
		rows = append(rows, []string{p.Image, string(p.State), p.Rule, config.Size(p.Bytes).String(), p.Reason})
	}
	fmt.Fprintf(w, "%s %d images\n", verb, len(r.Purges))
	if len(rows) > 0 {
		if err := printTable(w, []string{"IMAGE", "STATE", "RULE", "BYTES", "REASON"}, rows); err != nil {
			return err
		}
	}
	for _, s := range r.Skipped {
		fmt.Fprintln(w, "skipped:", safe(s))
	}
	fmt.Fprintf(w, "%s %d blobs, %d bytes (%s)\n", freed, r.BlobsFreed, r.BytesFreed, config.Size(r.BytesFreed))
	fmt.Fprintf(w, "content store: %d blobs, %d bytes (%s); referenced by kept images: %d bytes",
		r.ContentBlobs, r.ContentBytes, config.Size(r.ContentBytes), r.KeptBytes)
	if r.MaxBytes > 0 {
		fmt.Fprintf(w, " of max_bytes %s", config.Size(r.MaxBytes))
	}
	fmt.Fprintf(w, "\ngc duration: %.3fs\n", r.DurationSeconds)
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", safe(n))
	}
	return nil
}
