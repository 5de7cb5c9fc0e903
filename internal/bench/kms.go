package bench

import (
	"context"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/relayq/relayq/signer"
)

// kmsRegion is the region local-kms runs in and relayq asks for.
const kmsRegion = "us-east-1"

// kmsKey is a secp256k1 key in a local-kms the bench started: the `kms`
// scenario's one signer, reached by relayq through the AWS SDK's standard
// chain (env).
type kmsKey struct {
	server *child
	delay  *http.Server // the latency proxy in front of it, if any
	id     string
	addr   string
	env    []string // AWS_REGION, credentials, AWS_ENDPOINT_URL_KMS
}

func (k *kmsKey) close() {
	if k != nil {
		if k.delay != nil {
			k.delay.Close()
		}
		k.server.stop()
	}
}

// startKMS starts local-kms on a free port with a data directory in dir
// and creates one signing key in it.
func (o *Options) startKMS(ctx context.Context, dir string) (k *kmsKey, err error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	endpoint := "http://127.0.0.1:" + strconv.Itoa(port)
	env := append(os.Environ(), "PORT="+strconv.Itoa(port), "KMS_REGION="+kmsRegion,
		"KMS_DATA_PATH="+filepath.Join(dir, "local-kms-data"), "KMS_SEED_PATH="+filepath.Join(dir, "no-seed.yaml"))
	c, err := start(dir, "local-kms", o.LocalKMSBin, env)
	if err != nil {
		return nil, err
	}
	k = &kmsKey{server: c}
	defer func() {
		if err != nil {
			k.close()
		}
	}()
	if err := c.waitReady(ctx, func() error {
		resp, err := http.Post(endpoint, "application/json", strings.NewReader("{}"))
		if err != nil {
			return err
		}
		return resp.Body.Close()
	}); err != nil {
		return k, err
	}
	client := kms.New(kms.Options{Region: kmsRegion, BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("bench", "bench", "")})
	out, err := client.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: kmstypes.KeySpecEccSecgP256k1, KeyUsage: kmstypes.KeyUsageTypeSignVerify})
	if err != nil {
		return k, fmt.Errorf("local-kms: create key: %w", err)
	}
	k.id = *out.KeyMetadata.KeyId
	s, err := signer.NewKMS(ctx, client, k.id, big.NewInt(1), 0)
	if err != nil {
		return k, err
	}
	k.addr = s.Address().Hex()
	if o.KMSLatency > 0 {
		// What relayq sees of a real KMS: a network round trip per call.
		if endpoint, err = k.delayed(endpoint, o.KMSLatency); err != nil {
			return k, err
		}
	}
	k.env = []string{
		"AWS_REGION=" + kmsRegion, "AWS_ACCESS_KEY_ID=bench", "AWS_SECRET_ACCESS_KEY=bench",
		"AWS_ENDPOINT_URL_KMS=" + endpoint, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + os.DevNull, "AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
		"RELAYQ_PRIVATE_KEYS=", "RELAYQ_KMS_KEY_IDS=" + k.id,
	}
	return k, nil
}

// delayed starts a reverse proxy to endpoint that holds each request for
// d before forwarding it, and returns its URL.
func (k *kmsKey) delayed(endpoint string, d time.Duration) (string, error) {
	target, err := url.Parse(endpoint)
	if err != nil {
		return "", err
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{MaxIdleConnsPerHost: 256}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	k.delay = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(d)
		proxy.ServeHTTP(w, r)
	})}
	go func() { _ = k.delay.Serve(l) }()
	return "http://" + l.Addr().String(), nil
}
