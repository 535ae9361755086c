package admin

import (
	"context"
	"fmt"
	"net/http"

	"github.com/gorilla/mux"
)

// Role is what an identity of the admin API may do. Each role may do what
// the roles below it may.
type Role string

// The roles, lowest first.
const (
	// RolePuller may only pull from the registry API (registry.auth,
	// package pullauth); every admin API route refuses it.
	RolePuller Role = "puller"
	// RoleViewer reads everything: images, audit, jobs, events, DB status.
	RoleViewer Role = "viewer"
	// RoleApprover also decides on images: approve, revoke, rescan, pin, unpin.
	RoleApprover Role = "approver"
	// RoleAdmin also manages tokens, imports the vulnerability DB, reloads
	// malware signatures, runs the garbage collector, adds or removes
	// watches and reads the settings (GET /api/v1/settings).
	RoleAdmin Role = "admin"
)

// rank orders the roles; 0 is no role at all.
func (r Role) rank() int {
	switch r {
	case RolePuller:
		return 1
	case RoleViewer:
		return 2
	case RoleApprover:
		return 3
	case RoleAdmin:
		return 4
	}
	return 0
}

// Valid reports whether r is one of the roles.
func (r Role) Valid() bool { return r.rank() > 0 }

// AtLeast reports whether r may do what role need may (r is need or above it).
func (r Role) AtLeast(need Role) bool { return r.Valid() && r.rank() >= need.rank() }

// routeRoles is the authorization table of the admin API, the one place
// that says who may do what: each route, as "METHOD path-template" of
// the router, maps to the lowest role allowed to call it. Reading is for
// viewers (the token list excepted: it names every person with access),
// decisions on images are for approvers, and everything that changes who
// has access, what the scanners know or what is stored at all is for
// admins. A route missing here is refused to every role but admin (and
// TestRoleMatrix fails for it).
var routeRoles = map[string]Role{
	"GET /api/v1/images":                            RoleViewer,
	"GET /api/v1/images/{image:.+}":                 RoleViewer,
	"GET /api/v1/images/{image:.+}/vulnerabilities": RoleViewer,
	"GET /api/v1/images/{image:.+}/sbom":            RoleViewer,
	"GET /api/v1/images/{image:.+}/pulls":           RoleViewer,
	"GET /api/v1/vulnerabilities/{id}":              RoleViewer,
	"GET /api/v1/db":                                RoleViewer,
	"GET /api/v1/audit":                             RoleViewer,
	"GET /api/v1/jobs":                              RoleViewer,
	"GET /api/v1/events":                            RoleViewer,
	"GET /api/v1/watches":                           RoleViewer,
	"GET /api/v1/keys/public":                       RoleViewer,
	"POST /api/v1/approve":                          RoleApprover,
	"POST /api/v1/revoke":                           RoleApprover,
	"POST /api/v1/rescan":                           RoleApprover,
	"POST /api/v1/pin":                              RoleApprover,
	"POST /api/v1/unpin":                            RoleApprover,
	"POST /api/v1/db/import":                        RoleAdmin,
	"POST /api/v1/malware/reload":                   RoleAdmin,
	"POST /api/v1/gc":                               RoleAdmin,
	"POST /api/v1/watches":                          RoleAdmin,
	"DELETE /api/v1/watches/{image:.+}":             RoleAdmin,
	"GET /api/v1/settings":                          RoleAdmin,
	"GET /api/v1/tokens":                            RoleAdmin,
	"POST /api/v1/tokens":                           RoleAdmin,
	"DELETE /api/v1/tokens/{name}":                  RoleAdmin,
}

// requiredRole is the lowest role allowed on the route r matched, and the
// route's table key. Unknown routes need admin (fail closed).
func requiredRole(r *http.Request) (Role, string) {
	key := r.Method + " " + r.URL.Path
	if route := mux.CurrentRoute(r); route != nil {
		if tpl, err := route.GetPathTemplate(); err == nil {
			key = r.Method + " " + tpl
		}
	}
	if role, ok := routeRoles[key]; ok {
		return role, key
	}
	return RoleAdmin, key
}

// Identity is who calls the admin API: the bootstrap admin ("admin") or
// an API token's name, and its role.
type Identity struct {
	Name string
	Role Role
}

// identityKey is the request context key of the caller's Identity.
type identityKey struct{}

// withIdentity returns ctx carrying id.
func withIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityOf returns the authenticated caller of r (set by the auth
// middleware), or a zero Identity on an unauthenticated request.
func IdentityOf(r *http.Request) Identity {
	id, _ := r.Context().Value(identityKey{}).(Identity)
	return id
}

// allowed reports whether id may call the route r matched; otherwise the
// error says which role it would need.
func allowed(id Identity, r *http.Request) error {
	need, key := requiredRole(r)
	if id.Role.AtLeast(need) {
		return nil
	}
	return fmt.Errorf("role %s may not %s (needs %s)", id.Role, key, need)
}
