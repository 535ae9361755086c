package main

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	// sigstore's in-process KMS stands in for a cloud KMS: the signer still
	// goes through kms.Get like awskms:// or hashivault:// would.
	_ "github.com/sigstore/sigstore/pkg/signature/kms/fake"

	"github.com/airlockproxy/airlock/config"
	"github.com/airlockproxy/airlock/internal/registrytest"
	"github.com/airlockproxy/airlock/sign"
)

type manifest struct {
	raw []byte
	mt  string
}

func (m manifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m manifest) MediaType() (types.MediaType, error) { return types.MediaType(m.mt), nil }

// TestKMSSigner signs with a key held in a KMS and verifies the signature
// with the KMS key's public half, as cosign verify --key would.
func TestKMSSigner(t *testing.T) {
	ctx := context.Background()
	s, err := loadSigner(ctx, config.Signing{KMS: "fakekms://airlock-test"})
	if err != nil {
		t.Fatal(err)
	}
	up := registrytest.NewUpstream(t)
	img := registrytest.Image(t, 1, 512, types.OCIManifestSchema1)
	h := up.PushImage(t, "kms/app:1", img)
	raw, _ := img.RawManifest()
	d := digest.Digest(h.String())
	sig, _, err := s.SignImage(d, int64(len(raw)), string(types.OCIManifestSchema1), up.Host()+"/kms/app", nil)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := name.NewRepository(up.Host()+"/kms/app", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range sig.Blobs {
		if err := remote.WriteLayer(repo, static.NewLayer(b, types.OCILayer)); err != nil {
			t.Fatal(err)
		}
	}
	tag, _ := sign.SignatureTag(d)
	if err := remote.Put(repo.Tag(tag), manifest{sig.Manifest, sig.MediaType}); err != nil {
		t.Fatal(err)
	}
	v, err := sign.Verify(ctx, repo, d, sign.TrustPolicy{Keys: [][]byte{s.PublicKeyPEM()}, IgnoreTlog: true})
	if err != nil || !v.Verified {
		t.Fatalf("KMS signature does not verify: %+v, %v", v, err)
	}

	if _, err := loadSigner(ctx, config.Signing{KMS: "nosuchkms://key"}); err == nil || !strings.Contains(err.Error(), "signing.kms") {
		t.Fatalf("unknown KMS scheme: %v", err)
	}
}
