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
		if r.Mode != VerifyNone && len(r.Keys) == 0 && len(r.Identities) == 0 {
			return fmt.Errorf("%s: mode %s needs keys or identities to verify against", f, r.Mode)
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
