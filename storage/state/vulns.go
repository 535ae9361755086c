package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/airlockproxy/airlock/storage/kv"
)

// vulnEntry is one image's exposure to one vulnerability.
type vulnEntry struct {
	Severity string   `json:"severity"`
	Packages []string `json:"packages"`
}

// VulnRef is what a scan found of one vulnerability in an image.
type VulnRef struct {
	Severity string
	Packages []string
}

// SetVulns replaces the vulnerabilities indexed for ref with vulns (keyed
// by vulnerability ID), in one transaction.
func (s *Store) SetVulns(ref Ref, vulns map[string]VulnRef) error {
	return s.db.Update(func(tx kv.Tx) error {
		idx, per := tx.Bucket(bucketVulns), tx.Bucket(bucketImageVulns)
		key := ref.String()
		var old []string
		if err := getJSON(per, []byte(key), &old); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		for _, id := range old {
			if err := idx.Delete([]byte(id + "\x00" + key)); err != nil {
				return err
			}
		}
		ids := make([]string, 0, len(vulns))
		for id, v := range vulns {
			ids = append(ids, id)
			if err := putJSON(idx, []byte(id+"\x00"+key), vulnEntry{Severity: v.Severity, Packages: v.Packages}); err != nil {
				return err
			}
		}
		sort.Strings(ids)
		return putJSON(per, []byte(key), ids)
	})
}

// ImagesWithVuln lists every image whose last scan found vulnerability id.
func (s *Store) ImagesWithVuln(id string) ([]VulnHit, error) {
	var out []VulnHit
	prefix := []byte(id + "\x00")
	err := s.db.View(func(tx kv.Tx) error {
		images := tx.Bucket(bucketImages)
		c := tx.Bucket(bucketVulns).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			ref, err := ParseRef(string(k[len(prefix):]))
			if err != nil {
				return fmt.Errorf("vuln index key %q: %w", k, err)
			}
			var e vulnEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode vuln index %q: %w", k, err)
			}
			hit := VulnHit{Image: ref, Severity: e.Severity, Packages: e.Packages}
			var img Image
			if err := getJSON(images, []byte(ref.String()), &img); err == nil {
				hit.State = img.State
			}
			out = append(out, hit)
		}
		return nil
	})
	return out, err
}
