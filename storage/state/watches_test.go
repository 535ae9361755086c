package state

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestWatches(t *testing.T) {
	s, where := openStore(t)
	w := Watch{Image: "docker.io/library/nginx", Tags: []string{"semver:>=1.27 <2", "latest"}, Interval: time.Hour, MaxNewPerRun: 5}
	got, err := s.AddWatch(w, "admin:alice")
	if err != nil {
		t.Fatal(err)
	}
	if got.CreatedBy != "admin:alice" || got.Created.IsZero() {
		t.Errorf("added %+v", got)
	}
	if _, err := s.AddWatch(w, "admin:bob"); !errors.Is(err, ErrConflict) {
		t.Errorf("second add: %v, want ErrConflict", err)
	}
	if _, err := s.AddWatch(Watch{Image: "ghcr.io/team/app", Tags: []string{"v*"}, Interval: time.Minute, MaxNewPerRun: 1}, "admin"); err != nil {
		t.Fatal(err)
	}
	// A status is not a watch definition.
	if err := s.SetWatchStatus(WatchStatus{Image: "docker.io/library/redis", LastRun: time.Now().UTC(), Listed: 3}); err != nil {
		t.Fatal(err)
	}
	list, err := s.Watches()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Image != "docker.io/library/nginx" || list[1].Image != "ghcr.io/team/app" || list[0].Tags[0] != "semver:>=1.27 <2" {
		t.Fatalf("watches %+v", list)
	}

	// Status round trip, bounded tags; visible to another process.
	var tags []WatchedTag
	for i := 0; i < MaxWatchedTags+10; i++ {
		tags = append(tags, WatchedTag{Tag: fmt.Sprintf("1.%d", i), Digest: dgst(fmt.Sprint(i)), State: StateApproved})
	}
	now := time.Now().UTC().Truncate(time.Second)
	if err := s.SetWatchStatus(WatchStatus{Image: w.Image, LastRun: now, Listed: 2000, Truncated: true, Matched: 1010, Queued: 5, Deferred: 3, Tags: tags, Runner: s.Owner()}); err != nil {
		t.Fatal(err)
	}
	var other *Store
	if onPostgres() {
		if other, err = reopen(t, where); err != nil {
			t.Fatal(err)
		}
		defer other.Close()
	} else {
		other = s
	}
	st, err := other.WatchStatus(w.Image)
	if err != nil {
		t.Fatal(err)
	}
	if !st.LastRun.Equal(now) || st.Queued != 5 || st.Deferred != 3 || !st.Truncated || len(st.Tags) != MaxWatchedTags || st.Tags[1].Digest != dgst("1") {
		t.Errorf("status %+v", st)
	}
	if _, err := s.WatchStatus("docker.io/library/none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("status of an unknown watch: %v", err)
	}

	// Remove drops the definition and the status; both are audited.
	if err := s.RemoveWatch(w.Image, "admin:alice"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveWatch(w.Image, "admin:alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second remove: %v, want ErrNotFound", err)
	}
	if _, err := s.WatchStatus(w.Image); !errors.Is(err, ErrNotFound) {
		t.Errorf("status after remove: %v", err)
	}
	entries, err := s.Audit(w.Image, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Action != "watch-remove" || entries[1].Action != "watch-add" || entries[1].Actor != "admin:alice" {
		t.Errorf("audit %+v", entries)
	}
	if list, _ := s.Watches(); len(list) != 1 {
		t.Errorf("after remove: %+v", list)
	}
}
