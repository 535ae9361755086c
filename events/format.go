package events

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/airlockproxy/airlock/storage/state"
)

// Headers of every webhook request.
const (
	// SignatureHeader carries "sha256=<hex>": the HMAC-SHA256 of the exact
	// request body with the endpoint's secret (events.webhooks[].secret_env).
	SignatureHeader = "X-Airlock-Signature"
	// EventIDHeader repeats the event's ID (also in a slack body, which
	// has no place for it): a receiver drops redeliveries by it.
	EventIDHeader = "X-Airlock-Event-Id"
	// EventTypeHeader repeats the event's type.
	EventTypeHeader = "X-Airlock-Event-Type"
	// ContentTypeCloudEvents is the content type of a structured-mode
	// CloudEvents request.
	ContentTypeCloudEvents = "application/cloudevents+json; charset=utf-8"
)

// CloudEvent is the structured-mode CloudEvents 1.0 body of a webhook
// request. AirlockSeq is an extension attribute: the event's position in
// Airlock's outbox, increasing in delivery order.
type CloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	AirlockSeq      uint64          `json:"airlockseq"`
	Data            state.EventData `json:"data"`
}

// EncodeCloudEvent returns ev as a CloudEvents 1.0 JSON document.
func EncodeCloudEvent(ev state.Event, source string) ([]byte, error) {
	b, err := json.Marshal(CloudEvent{
		SpecVersion: "1.0", ID: ev.ID, Source: source, Type: ev.Type, Subject: ev.Subject,
		Time: ev.Time.UTC(), DataContentType: "application/json", AirlockSeq: ev.Seq, Data: ev.Data,
	})
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", ev.ID, err)
	}
	return b, nil
}

// EncodeSlack returns ev as {"text": "..."}, the body Slack and Microsoft
// Teams incoming webhooks accept.
func EncodeSlack(ev state.Event) ([]byte, error) {
	b, err := json.Marshal(struct {
		Text string `json:"text"`
	}{SlackText(ev)})
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", ev.ID, err)
	}
	return b, nil
}

// SlackText is a one-line summary of ev for a chat channel.
func SlackText(ev state.Event) string {
	d := ev.Data
	var sb strings.Builder
	sb.WriteString("Airlock: ")
	switch {
	case ev.Type == state.EventFlagged:
		fmt.Fprintf(&sb, "%s was *flagged* (still %s)", ev.Subject, d.State)
	case ev.Type == state.EventVulnDBUpdated, ev.Type == state.EventMalwareDBUpdated:
		what := "vulnerability DB"
		if ev.Type == state.EventMalwareDBUpdated {
			what = "malware signatures"
		}
		fmt.Fprintf(&sb, "*%s updated*", what)
		if d.DB != nil {
			if !d.DB.Built.IsZero() {
				fmt.Fprintf(&sb, ", built %s", d.DB.Built.UTC().Format(time.RFC3339))
			}
			if d.DB.SchemaVersion != "" {
				fmt.Fprintf(&sb, ", schema %s", d.DB.SchemaVersion)
			}
			if d.DB.Detail != "" {
				fmt.Fprintf(&sb, ", %s", d.DB.Detail)
			}
		}
	case strings.HasPrefix(ev.Type, state.EventImagePrefix):
		fmt.Fprintf(&sb, "%s is now *%s*", ev.Subject, strings.TrimPrefix(ev.Type, state.EventImagePrefix))
		if d.From != "" {
			fmt.Fprintf(&sb, " (was %s)", d.From)
		}
	default:
		fmt.Fprintf(&sb, "%s %s", ev.Type, ev.Subject)
	}
	if len(d.Tags) > 0 {
		fmt.Fprintf(&sb, "; tags %s", strings.Join(d.Tags, ", "))
	}
	if d.Reason != "" {
		fmt.Fprintf(&sb, ": %s", d.Reason)
	}
	if d.Actor != "" {
		fmt.Fprintf(&sb, " (by %s)", d.Actor)
	}
	return sb.String()
}

// Sign returns the X-Airlock-Signature value of body: "sha256=" and the
// hex HMAC-SHA256 of body keyed with secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether header is body's signature with secret, in
// constant time: what a receiver does before trusting a request.
func Verify(secret, body []byte, header string) bool {
	got, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	mac, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hmac.Equal(mac, m.Sum(nil))
}
