package main

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/airlockproxy/airlock/admin"
)

// imagesPulls prints `airlock images pulls IMAGE`: the image's pull count,
// when it was last pulled, and its recent pullers, newest first.
func imagesPulls(c *adminClient, image string, asJSON bool, stdout io.Writer) error {
	var out admin.PullsReport
	if err := c.do(http.MethodGet, "/api/v1/images/"+image+"/pulls", nil, &out); err != nil {
		return err
	}
	if asJSON {
		return printJSON(stdout, out)
	}
	last := "never"
	if !out.LastPulled.IsZero() {
		last = out.LastPulled.Format(time.RFC3339)
	}
	fmt.Fprintf(stdout, "%s  state %s  pulls %d  last pulled %s\n", safe(out.Image.String()), safe(string(out.State)), out.PullCount, last)
	var rows [][]string
	for _, p := range out.Pullers {
		rows = append(rows, []string{p.Last.Format(time.RFC3339), p.Addr, strconv.FormatInt(p.Pulls, 10), strconv.FormatInt(p.Heads, 10), p.UserAgent})
	}
	// printTable escapes every cell: a user agent is what a client sent.
	return printTable(stdout, []string{"LAST", "CLIENT", "PULLS", "HEADS", "USER AGENT"}, rows)
}
