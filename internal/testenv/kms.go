package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// LocalKMSRegion is the region local-kms is started in; clients must ask
// for the same one (AWS_REGION), since key ARNs carry it.
const LocalKMSRegion = "us-east-1"

// localKMSPath is where scripts/install-test-deps.sh puts local-kms
// (go install with GOBIN=<repo>/.tools/bin), relative to the repo root.
var localKMSPath = filepath.Join(".tools", "bin", "local-kms")

// LocalKMS is a local-kms server (github.com/nsmithuk/local-kms), an AWS
// KMS implementation that keeps its keys in a directory, started by
// StartLocalKMS.
type LocalKMS struct {
	t    testing.TB
	port int
	dir  string
	proc *process
}

// StartLocalKMS starts local-kms on a free port with its own data
// directory and waits until it answers. t.Cleanup kills it. local-kms
// binds every interface (it takes only a port); clients use 127.0.0.1.
//
// The binary is $LOCAL_KMS_BIN if set, else the one
// scripts/install-test-deps.sh put in <repo>/.tools/bin, else local-kms on
// PATH. A missing binary fails the test.
func StartLocalKMS(t testing.TB) *LocalKMS {
	t.Helper()
	bin, err := localKMSBinary()
	if err != nil {
		t.Fatalf("testenv: %v; %s", err, installHint)
	}
	dir := t.TempDir()
	k := &LocalKMS{t: t, dir: dir, proc: &process{name: "local-kms", bin: bin, logPath: filepath.Join(dir, "local-kms.log")}}
	t.Cleanup(func() {
		if err := k.proc.kill(); err != nil {
			t.Errorf("testenv: %v", err)
		}
		k.proc.logOnFailure(t)
	})
	k.setPort(FreePort(t))
	if err := k.proc.startReady(k.ready, func() error {
		port, err := freePort()
		k.setPort(port)
		return err
	}); err != nil {
		t.Fatalf("testenv: start local-kms: %v", err)
	}
	return k
}

// localKMSBinary finds local-kms: $LOCAL_KMS_BIN, then <repo>/.tools/bin,
// then PATH.
func localKMSBinary() (string, error) {
	if bin := os.Getenv("LOCAL_KMS_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("LOCAL_KMS_BIN=%s: %w", bin, err)
		}
		return bin, nil
	}
	if root, err := repoRoot(); err == nil {
		bin := filepath.Join(root, localKMSPath)
		if _, err := os.Stat(bin); err == nil {
			return bin, nil
		}
	}
	if bin, ok := findProgram("local-kms"); ok {
		return bin, nil
	}
	return "", fmt.Errorf("local-kms not found (not in $LOCAL_KMS_BIN, <repo>/%s, or PATH)", localKMSPath)
}

func (k *LocalKMS) setPort(port int) {
	k.port = port
	// local-kms is configured by its environment only. No seed file: keys
	// are created by the tests, through the SDK.
	k.proc.env = append(os.Environ(),
		"PORT="+strconv.Itoa(port),
		"KMS_REGION="+LocalKMSRegion,
		"KMS_DATA_PATH="+filepath.Join(k.dir, "data"),
		"KMS_SEED_PATH="+filepath.Join(k.dir, "no-seed.yaml"),
	)
}

// ready succeeds when our child owns the port and answers HTTP.
func (k *LocalKMS) ready() error {
	if err := k.proc.listening(k.port); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// An empty POST gets a KMS error answer: enough to know it serves.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, k.URL(), strings.NewReader("{}"))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// URL returns the endpoint, http://127.0.0.1:<port> (AWS_ENDPOINT_URL_KMS).
func (k *LocalKMS) URL() string { return "http://127.0.0.1:" + strconv.Itoa(k.port) }

// Env returns the AWS SDK environment that points a process at this
// server: region, static credentials (local-kms checks none) and
// AWS_ENDPOINT_URL_KMS, with shared config files and the instance
// metadata service switched off so nothing on the machine interferes.
func (k *LocalKMS) Env() []string {
	return []string{
		"AWS_REGION=" + LocalKMSRegion,
		"AWS_ACCESS_KEY_ID=test",
		"AWS_SECRET_ACCESS_KEY=test",
		"AWS_ENDPOINT_URL_KMS=" + k.URL(),
		"AWS_CONFIG_FILE=" + os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// Client returns a KMS client for this server that does not read the
// environment, so parallel tests need no t.Setenv.
func (k *LocalKMS) Client() *kms.Client {
	return kms.New(kms.Options{
		Region:       LocalKMSRegion,
		BaseEndpoint: aws.String(k.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
}

// CreateSigningKey creates a secp256k1 signing key (ECC_SECG_P256K1,
// SIGN_VERIFY) and, if alias is not "", the alias alias/<alias> for it.
// It returns the key's id.
func (k *LocalKMS) CreateSigningKey(t testing.TB, alias string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := k.Client()
	out, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: kmstypes.KeySpecEccSecgP256k1, KeyUsage: kmstypes.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatalf("testenv: local-kms create key: %v", err)
	}
	if alias != "" {
		if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/" + alias), TargetKeyId: out.KeyMetadata.KeyId}); err != nil {
			t.Fatalf("testenv: local-kms create alias: %v", err)
		}
	}
	return *out.KeyMetadata.KeyId
}

// SetEnv sets Env in the test's own environment (t.Setenv), for code that
// builds its client from the SDK's standard chain in process.
func (k *LocalKMS) SetEnv(t testing.TB) {
	t.Helper()
	for _, kv := range k.Env() {
		name, value, _ := strings.Cut(kv, "=")
		t.Setenv(name, value)
	}
}

// Stop kills the server (its keys stay in its data directory) and waits
// until it is gone. It may be called from any goroutine.
func (k *LocalKMS) Stop() {
	if err := k.proc.kill(); err != nil {
		k.t.Errorf("testenv: stop local-kms: %v", err)
	}
}

// Restart starts the server again on the same port and data directory,
// with the same keys, and waits until it answers. Call it from the test's
// own goroutine.
func (k *LocalKMS) Restart() {
	k.t.Helper()
	k.Stop()
	if err := k.proc.start(); err != nil {
		k.t.Fatalf("testenv: restart local-kms: %v", err)
	}
	if err := k.proc.waitReady(k.ready); err != nil {
		k.t.Fatalf("testenv: restart local-kms on port %d: %v", k.port, err)
	}
}

// LocalKMSBinary returns the path of the local-kms binary the tests use
// ($LOCAL_KMS_BIN, <repo>/.tools/bin, PATH), failing the test with the
// install hint when there is none: for tests that hand it to a program
// that starts local-kms itself.
func LocalKMSBinary(t testing.TB) string {
	t.Helper()
	bin, err := localKMSBinary()
	if err != nil {
		t.Fatalf("testenv: %v; %s", err, installHint)
	}
	return bin
}
