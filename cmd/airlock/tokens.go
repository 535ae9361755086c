package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/storage/state"
)

const tokensUsage = `Usage:
  airlock tokens create --name NAME --role puller|viewer|approver|admin [--expires 90d] [--json]
  airlock tokens list [--json]
  airlock tokens revoke NAME

API tokens of people and robots (admin role needed). create prints the
token once: it is stored only as a hash. NAME is the audit actor of the
token's actions. Roles: puller may only pull from the registry API when
registry.auth is on (docker login with the token's name and secret) and
is refused by every admin API route; viewer reads everything; approver
also approves, revokes, rescans, pins and unpins; admin also manages
tokens, imports the vulnerability DB, reloads malware signatures, runs gc
and changes watches. Any active token may pull.
--expires is days ("90d", the default), a Go duration ("12h") or "never".

Flags:
`

// tokensCommand runs `airlock tokens create|list|revoke`.
func tokensCommand(args []string, stdout, stderr io.Writer) error {
	fs, sub, err := subcommandFlags("tokens", tokensUsage, []string{"create", "list", "revoke"}, args, stdout, stderr)
	if err != nil {
		return err
	}
	conn := addAdminFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	name := fs.String("name", "", "create: the token's name, [a-z0-9][a-z0-9._-]{0,63}")
	role := fs.String("role", "", "create: puller, viewer, approver or admin")
	expires := fs.String("expires", "90d", `create: lifetime, days ("90d"), a Go duration or "never"`)
	positional, c, err := conn.parse(fs, args[1:], stdout, 30*time.Second)
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		if len(positional) != 0 || *name == "" || *role == "" {
			return errors.New("usage: airlock tokens create --name NAME --role puller|viewer|approver|admin [--expires 90d]")
		}
		var out admin.TokenCreated
		req := admin.TokenRequest{Name: *name, Role: admin.Role(*role), Expires: *expires}
		if err := c.do(http.MethodPost, "/api/v1/tokens", req, &out); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, out)
		}
		fmt.Fprintf(stdout, "token %s (role %s, expires %s) created; it is shown only now:\n%s\n",
			safe(out.Name), safe(out.Role), expiry(out.Token), out.Secret)
		return nil
	case "revoke":
		if len(positional) != 1 {
			return errors.New("usage: airlock tokens revoke NAME")
		}
		var out state.Token
		if err := c.do(http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(positional[0]), nil, &out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "token %s revoked\n", safe(out.Name))
		return nil
	}
	if len(positional) != 0 {
		return errors.New("usage: airlock tokens list [--json]")
	}
	var out admin.TokenList
	if err := c.do(http.MethodGet, "/api/v1/tokens", nil, &out); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, out)
	}
	var rows [][]string
	now := time.Now()
	for _, t := range out.Tokens {
		status := "active"
		switch {
		case !t.Revoked.IsZero():
			status = "revoked " + t.Revoked.Format(time.RFC3339) + " by " + t.RevokedBy
		case !t.Active(now):
			status = "expired"
		}
		rows = append(rows, []string{t.Name, t.Role, t.Created.Format(time.RFC3339), t.CreatedBy, expiry(t), status})
	}
	return printTable(stdout, []string{"NAME", "ROLE", "CREATED", "BY", "EXPIRES", "STATUS"}, rows)
}

// expiry is a token's expiry time, or "never".
func expiry(t state.Token) string {
	if t.Expires.IsZero() {
		return "never"
	}
	return t.Expires.Format(time.RFC3339)
}
