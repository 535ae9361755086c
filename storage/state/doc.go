// Package state is Airlock's state store: image records, the tag to digest
// history, the links that say in which role a manifest references a
// digest, the persistent job queue with its leases and the audit log. It
// runs on a kv.DB: a bbolt file for one process (Open) or a PostgreSQL
// database that several replicas share (New), with one code path for both.
// Every state transition commits in one transaction with its audit entry.
//
// # Replicas
//
// On a shared database, a job is leased to one process (NextJob, RenewJob;
// a lease ends after WithLease unless renewed, and the job then goes to
// whoever claims it next), a result from a process that lost its lease is
// refused (ErrLeaseLost), named leases (TryLease) make one process do a
// piece of work for all, and Changed fires for every process's commits.
// Decisions read the database every time: there is no decision cache to
// invalidate, so a change committed through one replica is what every
// replica decides by from its next request on. WithFailStatic is the one
// exception, and only while the database cannot be reached.
//
// # What is served
//
// This package holds the one serving rule of Airlock (ManifestDecision,
// BlobDecision); the registry API asks it for every manifest and blob it
// serves, by digest or by tag, GET or HEAD, with or without a Range. Only
// StateApproved is ever served, and a digest is served for the role in
// which an approved image reaches it, never because "some approved image
// stores these bytes". Within one repository of one upstream:
//
//  1. A manifest digest is served if its own image record is approved.
//  2. A manifest digest with no record of its own is served if it is a
//     platform manifest that an approved index lists as a manifest
//     descriptor and that the pipeline fetched with it (a RoleChild link,
//     and the index record's Manifests names it).
//  3. A manifest digest with no record of its own is served if it is a
//     manifest Airlock itself produced for an approved image (its .sig or
//     .att manifest, or an OCI 1.1 referrer) and the image's current
//     signing lists it (a RoleArtifact link, and Image.Signed names it).
//  4. A blob digest is served if it is the config or a layer descriptor of
//     a manifest that rules 1–3 serve (a RoleConfig or RoleLayer link).
//  5. A blob digest is served if it is a config or layer blob of an
//     artifact that rule 3 serves (a RoleArtifactBlob link).
//
// An own record of a digest in any state but approved wins over every
// other path, on /manifests/ and /blobs/ alike: a revoked platform
// manifest is not served through its approved index, and an image in
// quarantine is not served because an approved image holds its bytes as a
// layer. A manifest is never served from /blobs/ for being a manifest.
//
// A purged image (StatePurged: retention released its content, Purge) is
// never served, like any state but approved; a pull of it queues the whole
// pipeline again, like a new image (Request). Its record, links and audit
// trail stay; the content garbage collector (package retention) counts the
// digests of every record that is not purged as references.
//
// Links record facts about immutable bytes, so the decision is a few key
// lookups in one read transaction, not a scan: the digest's own record,
// its links, and the records those links name.
package state
