package pullauth

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestCostBoundary: every failed login costs a bcrypt check of the
// file's highest cost, so the file bounds what an anonymous attempt
// costs: MaxCost (14) is the last cost accepted, one more is refused
// with the line and the bound named.
func TestCostBoundary(t *testing.T) {
	h := hashOf(t, "pw", bcrypt.MinCost, "2y")
	for cost, ok := range map[string]bool{"13": true, "14": true, "15": false, "16": false, "99": false} {
		line := "dave:" + h[:4] + cost + h[6:]
		_, highest, err := parseHtpasswd(line + "\n")
		switch {
		case ok && (err != nil || highest != int(cost[0]-'0')*10+int(cost[1]-'0')):
			t.Errorf("cost %s: %v (highest cost %d), want accepted", cost, err, highest)
		case !ok && (err == nil || !strings.Contains(err.Error(), "line 1") || !strings.Contains(err.Error(), "4..14")):
			t.Errorf("cost %s: %v, want refused naming line 1 and 4..14", cost, err)
		}
	}
}
