package gate

import "time"

// SetClock makes the policy and lifecycle steps of e decide at now(), so
// a test can move time past an end-of-life date. Call it before the
// engine's first job.
func (e *Engine) SetClock(now func() time.Time) {
	for _, s := range e.steps {
		switch s := s.(type) {
		case *PolicyStep:
			s.now = now
		case *LifecycleStep:
			s.now = now
		}
	}
}
