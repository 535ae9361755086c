package content

import (
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/s3"
	"github.com/opencontainers/go-digest"
)

// presigner signs GET URLs of blobs in the S3 bucket. distribution's
// driver can presign too, but only for a fixed 20 minutes; a URL must not
// outlive a revoke by that much, so the validity is Airlock's choice.
type presigner struct {
	client *s3.S3
	bucket string
	root   string
}

// newPresigner builds a presigner from the s3 driver parameters, with the
// same credentials the driver uses (the SDK's chain: the environment, a
// pod or instance role). Called with envMu held, as the driver is.
func newPresigner(params map[string]any) (*presigner, error) {
	str := func(k string) string { v, _ := params[k].(string); return v }
	secure, err := boolParam(params, "secure", true)
	if err != nil {
		return nil, err
	}
	pathStyle, err := boolParam(params, "forcepathstyle", false)
	if err != nil {
		return nil, err
	}
	region := str("region")
	if region == "" {
		region = "us-east-1" // S3-compatible servers accept any
	}
	cfg := aws.NewConfig().WithRegion(region).WithDisableSSL(!secure)
	if ep := str("regionendpoint"); ep != "" {
		cfg = cfg.WithEndpoint(ep).WithS3ForcePathStyle(pathStyle)
	}
	sess, err := session.NewSession(cfg)
	if err != nil {
		return nil, fmt.Errorf("presign session: %w", err)
	}
	return &presigner{client: s3.New(sess), bucket: str("bucket"), root: str("rootdirectory")}, nil
}

// key is the object key of a driver path, as distribution's s3 driver
// maps it: the root directory, then the path, without a leading slash.
func (p *presigner) key(path string) string {
	return strings.TrimLeft(strings.TrimRight(p.root, "/")+path, "/")
}

// RedirectURL returns a URL valid for ttl that downloads blob d straight
// from the storage, or "" when the driver cannot presign (not S3). It
// does not check that d is stored: callers decide first, as for serving.
func (s *Store) RedirectURL(d digest.Digest, ttl time.Duration) (string, error) {
	if s.presign == nil {
		return "", nil
	}
	req, _ := s.presign.client.GetObjectRequest(&s3.GetObjectInput{
		Bucket: aws.String(s.presign.bucket),
		Key:    aws.String(s.presign.key(blobPath(d))),
	})
	u, err := req.Presign(ttl)
	if err != nil {
		return "", fmt.Errorf("presign %s: %w", d, err)
	}
	return u, nil
}
