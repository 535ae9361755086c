package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/watch"
)

const watchUsage = `Usage:
  airlock watch add IMAGE --tag PATTERN [--tag PATTERN]... [--interval 1h] [--max-new N]
  airlock watch list [--json]
  airlock watch remove IMAGE

Watched repositories: every interval Airlock lists IMAGE's tags upstream
(IMAGE is <upstream>/<repository>, e.g. docker.io/library/nginx), resolves
the tags matching a PATTERN with HEAD, and queues every new digest through
the pipeline, so a moved tag is approved (or rejected) before a node asks.
A PATTERN is a glob ("1.27.*", "latest"), "regex:<anchored Go regexp>" or
"semver:<range>" (e.g. "semver:>=1.27 <2"). Watches in the config file
(watch:) are listed too, and can only be changed there.

Flags:
`

// tagFlags collects repeated --tag flags.
type tagFlags []string

func (t *tagFlags) String() string     { return strings.Join(*t, ",") }
func (t *tagFlags) Set(v string) error { *t = append(*t, v); return nil }

// watchCommand runs `airlock watch add|list|remove`.
func watchCommand(args []string, stdout, stderr io.Writer) error {
	fs, sub, err := subcommandFlags("watch", watchUsage, []string{"add", "list", "remove"}, args, stdout, stderr)
	if err != nil {
		return err
	}
	conn := addAdminFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	var tags tagFlags
	fs.Var(&tags, "tag", "tag pattern (add; repeatable): glob, regex:RE or semver:RANGE")
	interval := fs.String("interval", "", "how often to check the upstream (add; Go duration, default 1h)")
	maxNew := fs.Int("max-new", 0, "pipelines the watch may have running at once (add; default 5)")
	positional, c, err := conn.parse(fs, args[1:], stdout, 30*time.Second)
	if err != nil {
		return err
	}
	switch sub {
	case "add":
		if len(positional) != 1 {
			return errors.New("usage: airlock watch add IMAGE --tag PATTERN... [--interval 1h] [--max-new N]")
		}
		if len(tags) == 0 {
			return errors.New("airlock watch add: at least one --tag PATTERN is required")
		}
		req := admin.WatchRequest{Image: positional[0], Tags: tags, Interval: *interval, MaxNewPerRun: *maxNew}
		var out watch.Definition
		if err := c.do(http.MethodPost, "/api/v1/watches", req, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, out)
		}
		fmt.Fprintf(stdout, "watching %s: tags %s every %s (at most %d new pipelines at once)\n",
			safe(out.Image), safe(strings.Join(out.Tags, " ")), out.Interval, out.MaxNewPerRun)
		return nil
	case "remove":
		if len(positional) != 1 {
			return errors.New("usage: airlock watch remove IMAGE")
		}
		var out map[string]string
		if err := c.do(http.MethodDelete, "/api/v1/watches/"+positional[0], nil, &out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "no longer watching %s\n", safe(out["removed"]))
		return nil
	}
	if len(positional) != 0 {
		return errors.New("usage: airlock watch list [--json]")
	}
	var out admin.WatchList
	if err := c.do(http.MethodGet, "/api/v1/watches", nil, &out); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, out)
	}
	return printTable(stdout, []string{"IMAGE", "TAGS", "INTERVAL", "SOURCE", "LAST RUN", "NEXT RUN", "SEEN", "QUEUED", "LAST ERROR"}, watchRows(out.Watches))
}

// watchRows renders watches for the table: SEEN is matched/listed tags
// with the matching tags and their states.
func watchRows(list []watch.Listed) [][]string {
	var rows [][]string
	for _, w := range list {
		last, seen, queued, lastErr := "never", "", "", ""
		if st := w.Status; st != nil {
			last = st.LastRun.Format(time.RFC3339)
			seen = fmt.Sprintf("%d/%d", st.Matched, st.Listed)
			if st.Truncated {
				seen += "+"
			}
			var parts []string
			for i, t := range st.Tags {
				if i == 5 {
					parts = append(parts, fmt.Sprintf("+%d more", len(st.Tags)-5))
					break
				}
				s := t.Tag
				if t.State != "" {
					s += "=" + string(t.State)
				}
				parts = append(parts, s)
			}
			if len(parts) > 0 {
				seen += " " + strings.Join(parts, " ")
			}
			queued = strconv.Itoa(st.Queued)
			if st.Deferred > 0 {
				queued += fmt.Sprintf(" (+%d next run)", st.Deferred)
			}
			lastErr = st.Error
		}
		rows = append(rows, []string{w.Image, strings.Join(w.Tags, " "), w.Interval.String(), w.Source, last,
			w.NextRun.Format(time.RFC3339), seen, queued, lastErr})
	}
	return rows
}
