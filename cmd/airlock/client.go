package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/storage/state"
)

// adminClient calls the admin API of a running Airlock.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

func adminCommand(args []string, stdout, stderr io.Writer) error {
	cmd := args[0]
	if cmd == "images" {
		if len(args) < 2 || (args[1] != "list" && args[1] != "show") {
			return errors.New("usage: airlock images list|show ...")
		}
		cmd = "images " + args[1]
		args = args[1:]
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	adminURL := fs.String("admin-url", envOr("AIRLOCK_ADMIN_URL", "http://127.0.0.1:5001"), "admin API base URL")
	tokenFile := fs.String("token-file", "", "file holding the admin token (default: $AIRLOCK_ADMIN_TOKEN)")
	reason := fs.String("reason", "", "why (recorded in the audit log)")
	stateFilter := fs.String("state", "", "only images in this state")
	imageFilter := fs.String("image", "", "only entries of this image")
	limit := fs.Int("limit", 50, "at most this many entries")
	asJSON := fs.Bool("json", false, "print JSON")
	// Flags may come after the image argument, as in the README examples.
	positional, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return exitError(2)
	}
	token := os.Getenv("AIRLOCK_ADMIN_TOKEN")
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return errors.New("no admin token: set AIRLOCK_ADMIN_TOKEN or pass --token-file")
	}
	c := &adminClient{base: strings.TrimRight(*adminURL, "/"), token: token, http: &http.Client{Timeout: 30 * time.Second}}

	needImage := func() (string, error) {
		if len(positional) != 1 {
			return "", fmt.Errorf("usage: airlock %s IMAGE", cmd)
		}
		return positional[0], nil
	}
	switch cmd {
	case "images list":
		var out struct {
			Images []state.Image `json:"images"`
		}
		if err := c.do(http.MethodGet, "/api/v1/images?state="+url.QueryEscape(*stateFilter), nil, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, out)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "STATE\tIMAGE\tTAGS\tUPDATED\tREASON")
		for _, img := range out.Images {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", img.State, img.Ref, strings.Join(img.Tags, ","), img.Updated.Format(time.RFC3339), img.Reason)
		}
		return tw.Flush()
	case "images show":
		img, err := needImage()
		if err != nil {
			return err
		}
		var out admin.ImageDetail
		if err := c.do(http.MethodGet, "/api/v1/images/"+img, nil, &out); err != nil {
			return err
		}
		return printJSON(stdout, out)
	case "approve", "revoke", "rescan":
		img, err := needImage()
		if err != nil {
			return err
		}
		var out state.Image
		req := admin.ActionRequest{Image: img, Reason: *reason, Actor: os.Getenv("USER")}
		if err := c.do(http.MethodPost, "/api/v1/"+cmd, req, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, out)
		}
		fmt.Fprintf(stdout, "%s: %s (%s)\n", out.Ref, out.State, out.Reason)
		return nil
	case "audit":
		var out struct {
			Entries []state.Entry `json:"entries"`
		}
		q := "/api/v1/audit?limit=" + strconv.Itoa(*limit) + "&image=" + url.QueryEscape(*imageFilter)
		if err := c.do(http.MethodGet, q, nil, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, out)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tACTOR\tACTION\tIMAGE\tFROM\tTO\tREASON")
		for _, e := range out.Entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Format(time.RFC3339), e.Actor, e.Action, e.Image, e.From, e.To, e.Reason)
		}
		return tw.Flush()
	case "jobs":
		var out any
		if err := c.do(http.MethodGet, "/api/v1/jobs", nil, &out); err != nil {
			return err
		}
		return printJSON(stdout, out)
	}
	return fmt.Errorf("unknown command %q", cmd)
}

// parseInterspersed parses flags that may appear before or after positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

func (c *adminClient) do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return fmt.Errorf("admin API: %s: %s", resp.Status, e.Error)
		}
		return fmt.Errorf("admin API: %s", resp.Status)
	}
	return json.Unmarshal(raw, out)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
