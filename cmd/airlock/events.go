package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/airlockproxy/airlock/admin"
)

const eventsUsage = `Usage: airlock events [--json] [--recent N]

Shows the event outbox: each webhook endpoint with the events waiting for
it, what it was sent, its last failure and next attempt, and the newest
events (GET /api/v1/events).

Flags:
`

// eventsCommand runs `airlock events`.
func eventsCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), eventsUsage)
		fs.PrintDefaults()
	}
	conn := addAdminFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	recent := fs.Int("recent", 20, "show this many of the newest events (0..1000)")
	if err := parseFlags(fs, args, stdout, fs.Parse); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "airlock events: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return exitError(2)
	}
	c, err := conn.client(30 * time.Second)
	if err != nil {
		return err
	}
	var out admin.EventsStatus
	if err := c.do(http.MethodGet, "/api/v1/events?recent="+strconv.Itoa(*recent), nil, &out); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, out)
	}
	return printEvents(stdout, out)
}

// printEvents prints the outbox as tables.
func printEvents(w io.Writer, out admin.EventsStatus) error {
	if !out.Enabled {
		fmt.Fprintln(w, "events: no webhooks configured (events.webhooks); no outbox is kept")
		return nil
	}
	fmt.Fprintf(w, "outbox: %d events kept (max %d), last #%d, %d dropped by the bound\n\n", out.Kept, out.MaxPending, out.LastSeq, out.Dropped)
	hosts := map[string]string{}
	formats := map[string]string{}
	for _, h := range out.Webhooks {
		hosts[h.Name], formats[h.Name] = h.Host, h.Format
	}
	when := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Local().Format(time.RFC3339)
	}
	var rows [][]string
	for _, e := range out.Endpoints {
		next := "-"
		if e.Attempts > 0 {
			next = when(e.NextAttempt)
		}
		rows = append(rows, []string{
			e.Name, hosts[e.Name], formats[e.Name], strconv.FormatUint(e.Pending, 10), strconv.FormatUint(e.Sent, 10),
			strconv.FormatUint(e.Skipped, 10), strconv.FormatUint(e.Lost, 10), strconv.Itoa(e.Attempts), next, e.LastError,
		})
	}
	if err := printTable(w, []string{"ENDPOINT", "HOST", "FORMAT", "PENDING", "SENT", "SKIPPED", "LOST", "FAILED ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR"}, rows); err != nil {
		return err
	}
	if len(out.Recent) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nrecent events (newest first):")
	rows = rows[:0]
	for _, ev := range out.Recent {
		rows = append(rows, []string{strconv.FormatUint(ev.Seq, 10), ev.Time.Local().Format(time.RFC3339), ev.Type, ev.Subject, ev.Data.Reason, ev.ID})
	}
	return printTable(w, []string{"SEQ", "TIME", "TYPE", "SUBJECT", "REASON", "ID"}, rows)
}
