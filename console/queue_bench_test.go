package console

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/airlockproxy/airlock/storage/state"
)

// BenchmarkPages measures the review queue (GET /ui/) and an image page
// (GET /ui/images/<IMAGE>) over a store of n images, a tenth of them in
// the queue's states, each with two tags, at n = 100 (the reference) and
// 10 times and 100 times as many: the queue and the image page read the
// image records per state through the API, so their cost grows with the
// store, and this shows how fast.
func BenchmarkPages(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("images=%d", n), func(b *testing.B) {
			e := newEnv(b, envOptions{})
			var page state.Ref
			for i := range n {
				st := state.StateApproved
				switch i % 30 {
				case 0:
					st = state.StateAwaitingApproval
				case 1:
					st = state.StateRejected
				case 2:
					st = state.StateFailed
				}
				ref := e.image(b, imageSpec{
					repo: fmt.Sprintf("team%d/app%d", i%50, i%500), seed: fmt.Sprint(i), state: st, reason: "bench",
					tags: []string{fmt.Sprintf("v%d", i), "latest"}, severities: map[string]int{"High": i % 3},
				})
				if i == n/2 {
					page = ref
				}
			}
			br := e.browser(b).signIn(b, bootstrapToken)
			for _, p := range []struct{ name, path string }{
				{"queue", "/ui/"},
				{"image", "/ui/images/" + page.String()},
			} {
				b.Run(p.name, func(b *testing.B) {
					for b.Loop() {
						br.get(b, p.path).want(b, p.name, http.StatusOK)
					}
				})
			}
		})
	}
}
