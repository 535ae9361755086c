package sso

import (
	"slices"
	"testing"

	"github.com/airlockproxy/airlock/admin"
	"github.com/airlockproxy/airlock/config"
)

// TestRolesMatchAdmin keeps config.OIDCRoles (which sso ranks by) equal to
// admin's roles, lowest first: config cannot import admin.
func TestRolesMatchAdmin(t *testing.T) {
	want := []string{string(admin.RoleViewer), string(admin.RoleApprover), string(admin.RoleAdmin)}
	if !slices.Equal(config.OIDCRoles, want) {
		t.Fatalf("config.OIDCRoles = %v, admin's roles are %v", config.OIDCRoles, want)
	}
	for i, r := range config.OIDCRoles {
		if !admin.Role(r).Valid() || roleRank(r) != i+1 {
			t.Errorf("role %q: valid %v, rank %d", r, admin.Role(r).Valid(), roleRank(r))
		}
	}
	if roleRank("root") != 0 {
		t.Error("an unknown role has a rank")
	}
}
