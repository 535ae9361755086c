package state

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlockproxy/airlock/internal/pgtest"
	"github.com/airlockproxy/airlock/storage/kv"
	"github.com/opencontainers/go-digest"
)

// decisionBenchImages is how many image records the benchmark DB holds.
const decisionBenchImages = 100_000

// decisionsPerOp is how many decisions one benchmark iteration makes, so
// that `make bench`'s fixed -benchtime 3x still times a useful number.
const decisionsPerOp = 2000

// BenchmarkManifestDecision measures the serving decision a manifest GET
// by digest makes (Store.ManifestDecision, one bbolt read transaction) on
// a real bbolt file holding 100k approved image records, 1000 repositories
// of 100 images, each with a scan and policy summary, four pipeline steps,
// three blobs and their content records: about what a busy cache holds.
// The DB is built once per run, in b.TempDir, with a few large write
// transactions (a record per Request and Transition would take
// minutes of fsyncs), then reopened so the reads start from the file.
//
// One iteration (op) makes decisionsPerOp decisions, so ns/op and B/op are
// per 2000 decisions.
//
// Sub-benchmarks: an approved image (the hit path of every cached pull),
// a digest Airlock does not know (the path of a first pull), and a layer
// of an approved image (BlobDecision: its link, then the rule for the
// manifest that lists it), each from
// one goroutine and from GOMAXPROCS goroutines (b.RunParallel). Reported:
// decisions/s (per second of wall time, over all goroutines).
//
// Engines, side by side in one run: bbolt (the file) and postgres (the
// same records copied into a PostgreSQL database on this machine, reached
// over 127.0.0.1, as replicas reach theirs; decisions read through, no
// cache).
func BenchmarkManifestDecision(b *testing.B) {
	path := filepath.Join(b.TempDir(), "airlock.db")
	start := time.Now()
	refs := fillDecisionDB(b, path, decisionBenchImages)
	b.Logf("filled %d image records in %s", len(refs), time.Since(start).Round(time.Millisecond))
	b.Run("bbolt", func(b *testing.B) {
		s, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchDecisions(b, s, refs)
	})
	b.Run("postgres", func(b *testing.B) {
		src, err := kv.OpenBolt(path)
		if err != nil {
			b.Fatal(err)
		}
		dsn := pgtest.Shared(b).NewDatabase(b)
		dst, err := kv.OpenPostgres(context.Background(), dsn)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		counts, err := kv.Copy(dst, src, Buckets())
		src.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("copied %v into PostgreSQL in %s", counts, time.Since(start).Round(time.Millisecond))
		s, err := New(dst)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchDecisions(b, s, refs)
	})
}

func benchDecisions(b *testing.B, s *Store, refs []Ref) {

	unknown := make([]Ref, 4096)
	for i := range unknown {
		r := refs[i*7%len(refs)]
		r.Digest = digest.FromString(fmt.Sprintf("unknown-%d", i))
		unknown[i] = r
	}
	layers := make([]Ref, len(refs))
	for i, r := range refs {
		r.Digest = digest.FromString(fmt.Sprintf("layer-a-%d", i))
		layers[i] = r
	}
	cases := []struct {
		name  string
		refs  []Ref
		blob  bool
		serve bool
	}{{"approved", refs, false, true}, {"unknown", unknown, false, false}, {"approved-layer", layers, true, true}}
	for _, c := range cases {
		check := func(b *testing.B, r Ref) {
			decide := s.ManifestDecision
			if c.blob {
				decide = s.BlobDecision
			}
			dec, err := decide(r.Upstream, r.Repository, r.Digest)
			if err != nil {
				b.Fatal(err)
			}
			if dec.Serve != c.serve {
				b.Fatalf("%s: Serve = %v, want %v", r, dec.Serve, c.serve)
			}
		}
		b.Run(c.name+"/sequential", func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			began := time.Now()
			for b.Loop() {
				for range decisionsPerOp {
					check(b, c.refs[rng.IntN(len(c.refs))])
				}
			}
			b.ReportMetric(float64(b.N*decisionsPerOp)/time.Since(began).Seconds(), "decisions/s")
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			var seed atomic.Uint64
			began := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(seed.Add(1), 7))
				for pb.Next() {
					for range decisionsPerOp {
						check(b, c.refs[rng.IntN(len(c.refs))])
					}
				}
			})
			b.ReportMetric(float64(b.N*decisionsPerOp)/time.Since(began).Seconds(), "decisions/s")
		})
	}
}

// fillDecisionDB writes n approved image records, with their content
// records, to a new state file at path and returns their refs.
func fillDecisionDB(tb testing.TB, path string, n int) []Ref {
	tb.Helper()
	s, err := Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	refs := make([]Ref, 0, n)
	const batch = 5000
	for lo := 0; lo < n; lo += batch {
		err := s.db.Update(func(tx kv.Tx) error {
			images, links := tx.Bucket(bucketImages), tx.Bucket(bucketLinks)
			for i := lo; i < min(lo+batch, n); i++ {
				ref := Ref{Upstream: "docker.io", Repository: fmt.Sprintf("team%d/app%d", i%1000/50, i%1000), Digest: digest.FromString(fmt.Sprintf("image-%d", i))}
				blobs := []digest.Digest{
					digest.FromString(fmt.Sprintf("config-%d", i)),
					digest.FromString(fmt.Sprintf("layer-a-%d", i)),
					digest.FromString(fmt.Sprintf("layer-b-%d", i)),
				}
				img := Image{
					Ref: ref, State: StateApproved, Reason: "approved by policy auto",
					MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 1024,
					Blobs: blobs, ContentSize: 30 << 20, Tags: []string{fmt.Sprintf("v%d", i/1000)},
					Created: now, Updated: now, ApprovedAt: now, ApprovedBy: "pipeline",
					Scan: &ScanSummary{ScannedAt: now, Report: digest.FromString(fmt.Sprintf("report-%d", i)), DBBuilt: now,
						Packages: 120, Severities: map[string]int{"High": 2, "Medium": 7, "Low": 11}},
					Policy: &PolicySummary{Pass: true, Version: "v1", Decided: now},
				}
				for _, step := range []string{"fetch", "verify", "scan", "policy"} {
					img.Steps = append(img.Steps, StepResult{Step: step, Status: "passed", Started: now, Finished: now})
				}
				if err := putJSON(images, []byte(ref.String()), &img); err != nil {
					return err
				}
				for k, d := range blobs {
					role := RoleLayer
					if k == 0 {
						role = RoleConfig
					}
					l := Link{Digest: d, Role: role, Parent: ref.Digest, Image: ref.Digest, MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Size: 10 << 20}
					if err := putJSON(links, linkKey(ref, l), &l); err != nil {
						return err
					}
				}
				refs = append(refs, ref)
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return refs
}
