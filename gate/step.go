package gate

import (
	"context"
	"errors"

	"github.com/airlockproxy/airlock/storage/state"
)

// Step is one stage of the quarantine pipeline. Steps run in order; later
// issues plug signature verification, scanning and signing in here.
type Step interface {
	// Name identifies the step in records, logs and metrics ("fetch").
	Name() string
	// State is the image state while the step runs, or "" to keep the
	// previous one (for instant steps such as the policy decision).
	State() state.State
	// Run does the step's work on the subject. An error is retried with
	// backoff (unless marked Permanent); a verdict decides what comes next.
	Run(ctx context.Context, s *Subject) (Verdict, error)
}

// Subject is the image a pipeline run works on.
type Subject struct {
	// Image is the record as it was when the step started. Steps record
	// what they learn through Verdict.Update, not by editing it.
	Image state.Image
	// Rescan is true when the image is approved and only the checks run again.
	Rescan bool
	// Report is the scan step's report, for the steps after it.
	Report *Report
	// Artifact is the type of an OCI artifact that is not a container
	// image ("" for an image): the scan step skips it and the policy
	// step decides it by policy.artifact_types.
	Artifact string
	// Actor is who the approval will be credited to: the pipeline, or the
	// admin whose approval a sign job completes.
	Actor string
}

// Outcome is what a step decided.
type Outcome int

const (
	// Pass moves on to the next step; after the last one the image is approved.
	Pass Outcome = iota
	// Reject ends the pipeline with the image rejected (or revoked, on a rescan).
	Reject
	// Hold ends the pipeline with the image awaiting an admin's approval.
	Hold
	// Skip means the step had nothing to do for this subject.
	Skip
)

func (o Outcome) String() string {
	switch o {
	case Pass:
		return "passed"
	case Reject:
		return "rejected"
	case Hold:
		return "held"
	case Skip:
		return "skipped"
	}
	return "unknown"
}

// Verdict is a step's result.
type Verdict struct {
	Outcome Outcome
	// Detail explains the outcome; for Reject and Hold it becomes the
	// image's reason, which clients see in the DENIED message.
	Detail string
	// Update, if set, records what the step learned on the image record.
	// It runs inside the transaction that stores the step's result.
	Update func(*state.Image)
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying (the upstream says the
// manifest does not exist, the manifest is too large).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err: err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}
