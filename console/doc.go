// Package console is Airlock's web console, served on the admin listener
// under /ui/: the review queue of images waiting for a person, each
// image's evidence (timeline, vulnerabilities, SBOM, signatures, pulls),
// and the decisions approve, revoke and rescan.
//
// The rules it keeps:
//
//   - The console is a client of the admin API, in process: every read and
//     every decision goes through admin.Server.Invoke as the signed-in
//     identity, so the API's role table (admin/roles.go), its checks and its
//     audit actor apply unchanged. The console decides nothing itself; it
//     only hides buttons a role could not use anyway.
//   - Sign-in is with an API token (POST /ui/login, field "token") or through
//     OpenID Connect (GET /ui/login/oidc, see package sso). A session lives in
//     the state store (every replica knows it), its cookie is HttpOnly,
//     Secure, SameSite=Strict, and a token's session ends when the token is
//     revoked or expires (checked at every request, and before every
//     live update sent). An OIDC session keeps the role it signed in with
//     for its lifetime (admin.oidc.session_ttl, default 8h): a person
//     removed at the provider is refused at the next sign-in, not sooner. A sign-in never adopts a cookie the
//     browser already had, and one identity's sessions are bounded
//     (state.MaxSessionsPerIdentity), so signing in in a loop ends only
//     its own oldest sessions.
//   - Every form of a signed-in page carries the session's CSRF token
//     ("csrf"); the sign-in form, before any session, is guarded by the
//     cross-origin check every POST passes first. A POST without
//     the right one is refused (403) before anything runs.
//   - Upstream-controlled strings (image names, annotations, package names,
//     CVE texts) are attacker-controlled: pages are html/template, the
//     Content-Security-Policy allows no inline script and no foreign origin,
//     and the embedded script never writes HTML from data (textContent only).
//   - Pages read without JavaScript; the script adds live updates
//     (server-sent events) and table sorting and filtering.
package console
