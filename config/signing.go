package config

import (
	"fmt"
	"os"
	"path"
	"regexp"
	"strings"
	"time"
)

// Signature verification modes accepted in signatures.mode and rules[].mode.
const (
	// VerifyNone does not look at upstream signatures.
	VerifyNone = "none"
	// VerifyIfPresent verifies a signature when one exists and rejects the
	// image when it does not verify; unsigned images pass.
	VerifyIfPresent = "if-present"
	// VerifyRequired rejects images without a signature that verifies.
	VerifyRequired = "required"
)

// Signing configures how Airlock signs and attests the images it approves.
type Signing struct {
	// Key is the cosign private key file (encrypted PEM, as `airlock keys
	// generate` or `cosign generate-key-pair` write it). Empty: no signing.
	Key string `yaml:"key"`
	// KMS is a sigstore KMS key URI (awskms://, gcpkms://, azurekms://,
	// hashivault://, or a sigstore KMS plugin's scheme) used instead of Key.
	KMS string `yaml:"kms"`
	// PasswordEnv names the environment variable holding the key's password.
	PasswordEnv string `yaml:"password_env"`
	// PasswordFile names a file holding the key's password.
	PasswordFile string `yaml:"password_file"`
	// Reference is the registry host clients use to reach Airlock (e.g.
	// "airlock.internal:5000"); it goes into the signed payload's
	// docker-reference. Default: the upstream name.
	Reference string `yaml:"reference"`
	// Validity is how long an approval stays valid before the approval
	// attestation says it must be re-checked (lifecycle metadata).
	Validity time.Duration `yaml:"validity"`
	// Notation also signs approved images in the Notary Project format,
	// next to the cosign signature, for shops that verify with notation
	// (Ratify, AKS image integrity). Optional.
	Notation *NotationSigning `yaml:"notation"`
}

// NotationSigning is Airlock's Notation signing key.
type NotationSigning struct {
	// Key is the PEM private key (PKCS#1, PKCS#8 or EC) file.
	Key string `yaml:"key"`
	// CertificateChain is the PEM certificate chain file, the signing
	// certificate first (code-signing extended key usage), then its CAs.
	CertificateChain string `yaml:"certificate_chain"`
	// Format is the envelope: "jws" (default) or "cose".
	Format string `yaml:"format"`
}

// Enabled reports whether a signing key is configured.
func (s Signing) Enabled() bool { return s.Key != "" || s.KMS != "" }

// Password returns the key password from its env variable or file.
func (s Signing) Password() ([]byte, error) {
	switch {
	case s.PasswordEnv != "":
		return []byte(os.Getenv(s.PasswordEnv)), nil
	case s.PasswordFile != "":
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("signing.password_file: %w", err)
		}
		return []byte(strings.TrimRight(string(b), "\r\n")), nil
	}
	return nil, nil
}

// Which signature formats a rule requires (signatures.rules[].require).
const (
	// RequireEither: a cosign or a Notation signature that verifies is
	// enough (the default).
	RequireEither = "either"
	// RequireCosign and RequireNotation count only that format.
	RequireCosign   = "cosign"
	RequireNotation = "notation"
	// RequireBoth: both must verify.
	RequireBoth = "both"
)

// Signatures configures verification of upstream signatures.
type Signatures struct {
	// Mode applies to images no rule matches: none (default), if-present or required.
	Mode string `yaml:"mode"`
	// Rules set the mode and trust material per upstream and repository;
	// the last matching rule wins.
	Rules []SignatureRule `yaml:"rules"`
}

// SignatureRule is the signature policy for matching images.
type SignatureRule struct {
	// Upstream matches an upstream name exactly; empty matches all.
	Upstream string `yaml:"upstream"`
	// Repository is a repository glob; empty matches all.
	Repository string `yaml:"repository"`
	// Mode is none, if-present or required.
	Mode string `yaml:"mode"`
	// Keys are cosign public key files; a signature verified by any counts.
	Keys []string `yaml:"keys"`
	// Identities are accepted keyless signers.
	Identities []Identity `yaml:"identities"`
	// TrustedRoot is a sigstore trusted_root.json for keyless verification,
	// kept offline.
	TrustedRoot string `yaml:"trusted_root"`
	// Notation verifies Notary Project signatures against a trust policy
	// and trust store.
	Notation *NotationTrust `yaml:"notation"`
	// Require says which formats count when both cosign trust (keys or
	// identities) and Notation trust are set: either (default), cosign,
	// notation or both.
	Require string `yaml:"require"`
}

// NotationTrust is a Notary Project trust policy and trust store.
type NotationTrust struct {
	// TrustPolicy is a trustpolicy.json (OCI policy document, version 1.0).
	// Its registryScopes match "<upstream name>/<repository>", the image's
	// name in Airlock (e.g. docker.io/library/alpine), or "*".
	TrustPolicy string `yaml:"trust_policy"`
	// TrustStore is notation's truststore directory: x509/<type>/<name>/
	// holding the CA certificates the policy's trustStores name.
	TrustStore string `yaml:"trust_store"`
}

// HasCosign reports whether the rule has cosign trust material.
func (r SignatureRule) HasCosign() bool { return len(r.Keys) > 0 || len(r.Identities) > 0 }

// HasNotation reports whether the rule has Notation trust material.
func (r SignatureRule) HasNotation() bool { return r.Notation != nil }

// Formats returns which signature formats count under the rule, and
// whether all of them must verify (require: both).
func (r SignatureRule) Formats() (cosign, notation, all bool) {
	switch r.Require {
	case RequireCosign:
		return true, false, false
	case RequireNotation:
		return false, true, false
	case RequireBoth:
		return true, true, true
	}
	return r.HasCosign(), r.HasNotation(), false
}

// Identity is an accepted keyless signer: certificate identity and OIDC
// issuer, each exact or as a regular expression.
type Identity struct {
	Issuer        string `yaml:"issuer"`
	IssuerRegexp  string `yaml:"issuer_regexp"`
	Subject       string `yaml:"subject"`
	SubjectRegexp string `yaml:"subject_regexp"`
}

// For returns the rule in force for a repository: the last matching rule,
// or the global mode with no trust material.
func (s Signatures) For(upstream, repo string) SignatureRule {
	r := SignatureRule{Mode: s.Mode}
	for _, rule := range s.Rules {
		if rule.Upstream != "" && rule.Upstream != upstream {
			continue
		}
		if rule.Repository != "" && !globMatch(strings.Split(rule.Repository, "/"), strings.Split(repo, "/")) {
			continue
		}
		r = rule
	}
	return r
}

func validVerifyMode(m string) bool {
	return m == VerifyNone || m == VerifyIfPresent || m == VerifyRequired
}

func (s Signing) validate() error {
	if s.PasswordEnv != "" && s.PasswordFile != "" {
		return fmt.Errorf("signing.password_env: set password_env or password_file, not both")
	}
	if s.Key != "" && s.KMS != "" {
		return fmt.Errorf("signing.kms: set key or kms, not both")
	}
	if s.KMS != "" && !strings.Contains(s.KMS, "://") {
		return fmt.Errorf("signing.kms: %q is not a KMS URI like awskms:///arn:… or hashivault://keyname", s.KMS)
	}
	if s.Validity < 0 {
		return fmt.Errorf("signing.validity: must not be negative")
	}
	if n := s.Notation; n != nil {
		if n.Key == "" || n.CertificateChain == "" {
			return fmt.Errorf("signing.notation: key and certificate_chain are both required")
		}
		if n.Format != "" && n.Format != "jws" && n.Format != "cose" {
			return fmt.Errorf("signing.notation.format: %q is not jws or cose", n.Format)
		}
		if !s.Enabled() {
			return fmt.Errorf("signing.notation: signs next to the cosign signature; set signing.key or signing.kms too")
		}
	}
	return nil
}

func (s Signatures) validate() error {
	if !validVerifyMode(s.Mode) {
		return fmt.Errorf("signatures.mode: %q is not none, if-present or required", s.Mode)
	}
	for i, r := range s.Rules {
		f := fmt.Sprintf("signatures.rules[%d]", i)
		if !validVerifyMode(r.Mode) {
			return fmt.Errorf("%s.mode: %q is not none, if-present or required", f, r.Mode)
		}
		if r.Repository != "" {
			if _, err := path.Match(strings.ReplaceAll(r.Repository, "**", "*"), ""); err != nil {
				return fmt.Errorf("%s.repository: %q is not a valid glob", f, r.Repository)
			}
		}
		if r.Mode != VerifyNone && !r.HasCosign() && !r.HasNotation() {
			return fmt.Errorf("%s: mode %s needs keys, identities or notation trust to verify against", f, r.Mode)
		}
		if n := r.Notation; n != nil && (n.TrustPolicy == "" || n.TrustStore == "") {
			return fmt.Errorf("%s.notation: trust_policy and trust_store are both required", f)
		}
		switch r.Require {
		case "", RequireEither:
		case RequireCosign:
			if r.Mode != VerifyNone && !r.HasCosign() {
				return fmt.Errorf("%s.require: cosign needs keys or identities", f)
			}
		case RequireNotation:
			if r.Mode != VerifyNone && !r.HasNotation() {
				return fmt.Errorf("%s.require: notation needs notation.trust_policy and trust_store", f)
			}
		case RequireBoth:
			if r.Mode != VerifyNone && (!r.HasCosign() || !r.HasNotation()) {
				return fmt.Errorf("%s.require: both needs keys or identities and notation trust", f)
			}
		default:
			return fmt.Errorf("%s.require: %q is not either, cosign, notation or both", f, r.Require)
		}
		if len(r.Identities) > 0 && r.TrustedRoot == "" {
			return fmt.Errorf("%s.trusted_root: keyless identities need a trusted root file", f)
		}
		for j, id := range r.Identities {
			g := fmt.Sprintf("%s.identities[%d]", f, j)
			if (id.Issuer == "") == (id.IssuerRegexp == "") || (id.Subject == "") == (id.SubjectRegexp == "") {
				return fmt.Errorf("%s: set exactly one of issuer/issuer_regexp and one of subject/subject_regexp", g)
			}
			for _, re := range []string{id.IssuerRegexp, id.SubjectRegexp} {
				if _, err := regexp.Compile(re); err != nil {
					return fmt.Errorf("%s: %w", g, err)
				}
			}
		}
	}
	return nil
}

// CheckFiles makes sure every key and trust file the configuration names
// is readable, so a typo fails `serve` at start, not the first pull.
func (c *Config) CheckFiles() error {
	check := func(field, p string) error {
		if p == "" {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		return f.Close()
	}
	if err := check("signing.key", c.Signing.Key); err != nil {
		return fmt.Errorf("%w (create one with `airlock keys generate`)", err)
	}
	for i, r := range c.Signatures.Rules {
		for j, k := range r.Keys {
			if err := check(fmt.Sprintf("signatures.rules[%d].keys[%d]", i, j), k); err != nil {
				return err
			}
		}
		if err := check(fmt.Sprintf("signatures.rules[%d].trusted_root", i), r.TrustedRoot); err != nil {
			return err
		}
		if n := r.Notation; n != nil {
			if err := check(fmt.Sprintf("signatures.rules[%d].notation.trust_policy", i), n.TrustPolicy); err != nil {
				return err
			}
			if err := check(fmt.Sprintf("signatures.rules[%d].notation.trust_store", i), n.TrustStore); err != nil {
				return err
			}
		}
	}
	if n := c.Signing.Notation; n != nil {
		if err := check("signing.notation.key", n.Key); err != nil {
			return err
		}
		if err := check("signing.notation.certificate_chain", n.CertificateChain); err != nil {
			return err
		}
	}
	if err := check("policy.eol_table", c.Policy.EOLTable); err != nil {
		return err
	}
	for i, f := range c.Policy.VEX {
		if err := check(fmt.Sprintf("policy.vex[%d]", i), f); err != nil {
			return err
		}
	}
	for i, u := range c.Upstreams {
		if err := check(fmt.Sprintf("upstreams[%d].password_file", i), u.PasswordFile); err != nil {
			return err
		}
	}
	return nil
}
