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
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/scan"
	"github.com/airlockproxy/airlock/storage/state"
)

// adminClient calls the admin API of a running Airlock.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

// subcommandFlags returns the flag set of a command with subcommands
// (`airlock NAME SUB ...`) and the subcommand args[0] names. Without one
// of subs it prints usage: to stdout and errHelp when help was asked for,
// else to stderr and exit status 2.
func subcommandFlags(name, usage string, subs []string, args []string, stdout, stderr io.Writer) (*flag.FlagSet, string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if len(args) == 0 || !slices.Contains(subs, args[0]) {
		if wantsHelp(args) {
			fs.SetOutput(stdout)
			fs.Usage()
			return nil, "", errHelp
		}
		fs.Usage()
		return nil, "", exitError(2)
	}
	return fs, args[0], nil
}

// adminFlags are the flags every admin command takes: where the admin API
// is, the token file, and for an https:// admin API the CA and client
// certificate (clienttls.go).
type adminFlags struct {
	url, tokenFile        *string
	caCert, cert, certKey *string
}

func addAdminFlags(fs *flag.FlagSet) adminFlags {
	return adminFlags{
		url:       fs.String("admin-url", envOr("AIRLOCK_ADMIN_URL", "http://127.0.0.1:5001"), "admin API base URL"),
		tokenFile: fs.String("token-file", "", "file holding the admin token (default: $AIRLOCK_ADMIN_TOKEN)"),
		caCert:    fs.String("cacert", os.Getenv("AIRLOCK_CACERT"), "PEM CA bundle to verify an https:// admin API with, instead of the system roots ($AIRLOCK_CACERT)"),
		cert:      fs.String("cert", os.Getenv("AIRLOCK_CLIENT_CERT"), "PEM client certificate, for an admin API with admin.tls.client_ca_file ($AIRLOCK_CLIENT_CERT)"),
		certKey:   fs.String("key", os.Getenv("AIRLOCK_CLIENT_KEY"), "PEM private key of --cert ($AIRLOCK_CLIENT_KEY)"),
	}
}

// client returns an admin API client with the token from --token-file or
// $AIRLOCK_ADMIN_TOKEN.
func (f adminFlags) client(timeout time.Duration) (*adminClient, error) {
	token := os.Getenv("AIRLOCK_ADMIN_TOKEN")
	if *f.tokenFile != "" {
		b, err := os.ReadFile(*f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return nil, errors.New("no admin token: set AIRLOCK_ADMIN_TOKEN or pass --token-file")
	}
	tr, err := f.transport()
	if err != nil {
		return nil, err
	}
	return &adminClient{base: strings.TrimRight(*f.url, "/"), token: token, http: &http.Client{Timeout: timeout, Transport: tr}}, nil
}

// parse parses args with fs (flags may come after the positional
// arguments, as in the README examples) and returns the positional
// arguments and an admin API client.
func (f adminFlags) parse(fs *flag.FlagSet, args []string, stdout io.Writer, timeout time.Duration) ([]string, *adminClient, error) {
	var positional []string
	if err := parseFlags(fs, args, stdout, func(a []string) (err error) {
		positional, err = parseInterspersed(fs, a)
		return err
	}); err != nil {
		return nil, nil, err
	}
	c, err := f.client(timeout)
	return positional, c, err
}

func adminCommand(args []string, stdout, stderr io.Writer) error {
	cmd := args[0]
	switch cmd {
	case "images":
		if len(args) < 2 || !slices.Contains([]string{"list", "show", "vulns", "sbom", "pulls"}, args[1]) {
			return errors.New("usage: airlock images list|show|vulns|sbom|pulls ...")
		}
		cmd = "images " + args[1]
		args = args[1:]
	case "malware":
		if len(args) < 2 || args[1] != "reload" {
			return errors.New("usage: airlock malware reload")
		}
		cmd = "malware reload"
		args = args[1:]
	case "db":
		if len(args) < 2 || (args[1] != "import" && args[1] != "status") {
			return errors.New("usage: airlock db import FILE | airlock db status")
		}
		cmd = "db " + args[1]
		args = args[1:]
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	conn := addAdminFlags(fs)
	reason := fs.String("reason", "", "why (recorded in the audit log)")
	stateFilter := fs.String("state", "", "only images in this state")
	repoFilter := fs.String("repo", "", "only images of this repository (<upstream>/<repository>)")
	imageFilter := fs.String("image", "", "only entries of this image")
	limit := fs.Int("limit", 50, "at most this many entries")
	asJSON := fs.Bool("json", false, "print JSON")
	format := fs.String("format", "spdx", "SBOM format: spdx or syft")
	platform := fs.String("platform", "", "platform manifest digest or os/arch of an index (SBOM)")
	allowFallback := fs.Bool("allow-fallback", false, "revoke by tag: let the tag fall back to its previous approved digest instead of refusing it")
	// Flags may come after the image argument, as in the README examples.
	positional, c, err := conn.parse(fs, args[1:], stdout, 30*time.Second)
	if err != nil {
		return err
	}

	needImage := func() (string, error) {
		if len(positional) != 1 {
			return "", fmt.Errorf("usage: airlock %s IMAGE", cmd)
		}
		return positional[0], nil
	}
	switch cmd {
	case "images list":
		var out struct {
			Images []admin.ListedImage `json:"images"`
		}
		q := url.Values{"state": {*stateFilter}}
		if *repoFilter != "" {
			q.Set("repo", *repoFilter)
		}
		if err := c.do(http.MethodGet, "/api/v1/images?"+q.Encode(), nil, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, out)
		}
		var rows [][]string
		for _, img := range out.Images {
			// printTable escapes every cell; escaping here too would quote twice.
			rows = append(rows, []string{string(img.State), img.Ref.String(), tagColumn(img), img.Updated.Format(time.RFC3339), img.Reason})
		}
		return printTable(stdout, []string{"STATE", "IMAGE", "TAGS", "UPDATED", "REASON"}, rows)
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
		if *allowFallback && cmd != "revoke" {
			return errors.New("--allow-fallback applies to revoke by tag only")
		}
		var out admin.ActionResult
		req := admin.ActionRequest{Image: img, Reason: *reason, AllowFallback: *allowFallback}
		if err := c.do(http.MethodPost, "/api/v1/"+cmd, req, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, out)
		}
		fmt.Fprintf(stdout, "%s: %s (%s)\n", safe(out.Ref.String()), safe(string(out.State)), safe(out.Reason))
		if out.Message != "" {
			// What a revoke by tag did to the tag: refused, or falls back.
			fmt.Fprintln(stdout, safe(out.Message))
		}
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
		var rows [][]string
		for _, e := range out.Entries {
			rows = append(rows, []string{e.Time.Format(time.RFC3339), e.Actor, e.Action, e.Image, string(e.From), string(e.To), e.Reason})
		}
		return printTable(stdout, []string{"TIME", "ACTOR", "ACTION", "IMAGE", "FROM", "TO", "REASON"}, rows)
	case "images vulns":
		img, err := needImage()
		if err != nil {
			return err
		}
		var out admin.VulnerabilityReport
		if err := c.do(http.MethodGet, "/api/v1/images/"+img+"/vulnerabilities", nil, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, out)
		}
		return printVulns(stdout, out)
	case "images pulls":
		img, err := needImage()
		if err != nil {
			return err
		}
		return imagesPulls(c, img, *asJSON, stdout)
	case "settings":
		// The running configuration, secrets redacted (admins only).
		return c.raw(http.MethodGet, "/api/v1/settings", nil, stdout)
	case "images sbom":
		img, err := needImage()
		if err != nil {
			return err
		}
		q := url.Values{"format": {*format}, "platform": {*platform}}
		var buf bytes.Buffer
		if err := c.raw(http.MethodGet, "/api/v1/images/"+img+"/sbom?"+q.Encode(), nil, &buf); err != nil {
			return err
		}
		// Package names and licences come from the image: the same JSON,
		// with what a terminal would act on escaped.
		_, err = stdout.Write(jsonSafe(buf.Bytes()))
		return err
	case "cve":
		if len(positional) != 1 {
			return errors.New("usage: airlock cve VULNERABILITY-ID")
		}
		var out struct {
			Images []state.VulnHit `json:"images"`
		}
		if err := c.do(http.MethodGet, "/api/v1/vulnerabilities/"+url.PathEscape(positional[0]), nil, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, out)
		}
		var rows [][]string
		for _, h := range out.Images {
			rows = append(rows, []string{string(h.State), h.Image.String(), h.Severity, strings.Join(h.Packages, ", ")})
		}
		return printTable(stdout, []string{"STATE", "IMAGE", "SEVERITY", "PACKAGES"}, rows)
	case "db status":
		var out scan.DBStatus
		if err := c.do(http.MethodGet, "/api/v1/db", nil, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, out)
		}
		fmt.Fprintf(stdout, "built:          %s (%s ago)\nschema_version: %s\npath:           %s\nchecksum:       %s\nsource:         %s\n",
			out.Built.Format(time.RFC3339), out.Age.Round(time.Minute), safe(out.SchemaVersion), safe(out.Path), safe(out.Checksum), safe(out.Source))
		return nil
	case "db import":
		if len(positional) != 1 {
			return errors.New("usage: airlock db import FILE (a grype v6 DB archive or vulnerability.db)")
		}
		f, err := os.Open(positional[0])
		if err != nil {
			return err
		}
		defer f.Close()
		// Imports of multi-GB archives take a while: no client timeout.
		c.http.Timeout = 0
		var out admin.DBImportResult
		if err := c.do(http.MethodPost, "/api/v1/db/import?name="+url.QueryEscape(filepath.Base(positional[0])), f, &out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "imported vulnerability DB built %s (schema %s); queued %d rescans and %d retries\n",
			out.DB.Built.Format(time.RFC3339), safe(out.DB.SchemaVersion), out.Rescans, out.Retries)
		return nil
	case "malware reload":
		// clamd may take a minute to load a full database.
		c.http.Timeout = 3 * time.Minute
		var out admin.MalwareReloadResult
		if err := c.do(http.MethodPost, "/api/v1/malware/reload", nil, &out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "malware signatures reloaded: %s; queued %d rescans and %d retries\n", safe(out.Engine), out.Rescans, out.Retries)
		return nil
	case "jobs":
		var out any
		if err := c.do(http.MethodGet, "/api/v1/jobs", nil, &out); err != nil {
			return err
		}
		return printJSON(stdout, out)
	}
	return fmt.Errorf("unknown command %q", cmd)
}

// tagColumn lists an image's tags for `images list`, each marked with what
// a pull of the tag gets now: "latest (current)" is this digest,
// "latest (upstream)" points here upstream but another digest is served or
// the tag is refused, "latest (older)" is an earlier digest of the tag.
func tagColumn(img admin.ListedImage) string {
	parts := make([]string, 0, len(img.Tags))
	for _, t := range img.Tags {
		if st := img.TagStatus[t]; st != "" {
			t += " (" + st + ")"
		}
		parts = append(parts, t)
	}
	return strings.Join(parts, ", ")
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

// do sends body (JSON-encoded, or streamed when it is an io.Reader) and
// decodes the JSON answer into out.
func (c *adminClient) do(method, path string, body, out any) error {
	var buf bytes.Buffer
	if err := c.raw(method, path, body, &buf); err != nil {
		return err
	}
	return json.Unmarshal(buf.Bytes(), out)
}

// raw sends a request and copies a successful answer's body to w.
func (c *adminClient) raw(method, path string, body any, w io.Writer) error {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case io.Reader:
		rd = b
	default:
		enc, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(enc)
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
	// 202: an approval recorded while more approvers are needed
	// (gate.approvals_required); its answer says so in "message".
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			// The message may quote state (a reason, an image name).
			return fmt.Errorf("admin API: %s: %s", resp.Status, safe(e.Error))
		}
		return fmt.Errorf("admin API: %s", resp.Status)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	return nil
}

// printVulns prints a vulnerability report as a table.
func printVulns(w io.Writer, r admin.VulnerabilityReport) error {
	fmt.Fprintf(w, "%s  state %s", safe(r.Image.String()), safe(string(r.State)))
	if r.Report != nil {
		fmt.Fprintf(w, "  scanned %s with DB built %s", r.Report.ScannedAt.Format(time.RFC3339), r.Report.DB.Built.Format(time.DateOnly))
	}
	fmt.Fprintln(w)
	if r.Policy != nil {
		verdict := "passed"
		if !r.Policy.Pass {
			verdict = fmt.Sprintf("failed (%d violations)", r.Policy.Total)
		}
		fmt.Fprintf(w, "policy %s %s\n", safe(r.Policy.Version), verdict)
		for _, v := range r.Policy.Violations {
			fmt.Fprintln(w, "  -", safe(v))
		}
		for _, v := range r.Policy.Suppressed {
			fmt.Fprintln(w, "  suppressed:", safe(v))
		}
	}
	if r.Report == nil {
		return nil
	}
	// A match the policy's VEX suppressed stays in the report, marked.
	vex := func(m scan.Match) string {
		if r.Policy == nil {
			return ""
		}
		prefix := m.VulnID + " in " + m.Package + " " + m.Version + ": "
		for _, s := range r.Policy.Suppressed {
			if strings.HasPrefix(s, prefix) {
				return strings.TrimPrefix(s, prefix)
			}
		}
		return ""
	}
	var rows [][]string
	for _, p := range r.Report.Platforms {
		for _, m := range p.Matches {
			rows = append(rows, []string{p.Platform, m.VulnID, m.Severity, m.Package, m.Version, strings.Join(m.FixedIn, ","), vex(m)})
		}
	}
	return printTable(w, []string{"PLATFORM", "VULNERABILITY", "SEVERITY", "PACKAGE", "VERSION", "FIXED IN", "VEX"}, rows)
}

// printTable prints rows under header in aligned columns. Every cell is
// escaped (see safe): a newline or tab in a reason must not make a row.
func printTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = safe(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// printJSON prints v as indented JSON, with what a terminal would act on
// escaped (see jsonSafe).
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(jsonSafe(b), '\n'))
	return err
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
