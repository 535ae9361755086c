package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/airlockproxy/airlock/sign"
)

// keysCommand runs `airlock keys generate`: it writes the enterprise key
// pair in cosign's format (airlock.key encrypted with the password from
// the environment, airlock.pub), refusing to overwrite existing files.
func keysCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "generate" {
		return errors.New("usage: airlock keys generate [--dir DIR] [--password-env NAME]")
	}
	fs := flag.NewFlagSet("keys generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".", "directory for airlock.key and airlock.pub")
	pwEnv := fs.String("password-env", "AIRLOCK_KEY_PASSWORD", "environment variable holding the key password")
	if err := parseFlags(fs, args[1:], stdout, fs.Parse); err != nil {
		return err
	}
	pw, ok := os.LookupEnv(*pwEnv)
	if !ok {
		return fmt.Errorf("set %s to the password for the new key (it may be empty, which is not recommended)", *pwEnv)
	}
	priv, pub, err := sign.GenerateKeyPair([]byte(pw))
	if err != nil {
		return err
	}
	keyPath, pubPath := filepath.Join(*dir, "airlock.key"), filepath.Join(*dir, "airlock.pub")
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists; not overwriting a key", p)
		}
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(keyPath, priv, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (private, encrypted) and %s (public)\nconfigure:\n  signing:\n    key: %s\n    password_env: %s\n", keyPath, pubPath, keyPath, *pwEnv)
	return nil
}
