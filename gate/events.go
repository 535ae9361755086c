package gate

import (
	"strings"

	"github.com/airlockproxy/airlock/storage/state"
)

// DBUpdated records in the event outbox (when webhooks are configured)
// that the database named what ("vulnerability DB", "malware signatures")
// was updated, as dev.airlock.vulndb.updated or
// dev.airlock.malwaredb.updated. Call it before queueing the rescans the
// update causes, so the event precedes their outcomes. A failure is
// logged: the update itself has happened.
func (e *Engine) DBUpdated(what, actor, reason string, db *state.EventDB) {
	typ := state.EventVulnDBUpdated
	if strings.Contains(what, "malware") {
		typ = state.EventMalwareDBUpdated
	}
	if _, _, err := e.store.EmitEvent(typ, "", state.EventData{Actor: actor, Reason: reason, DB: db}); err != nil {
		e.log.Error("record event", "type", typ, "err", err)
	}
}
