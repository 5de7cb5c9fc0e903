package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts/keystore"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/nonce"
)

// A worker takes its keys from keystore files and hex values together;
// a wrong password or an account given twice stops it at start.
func TestWorkerLoadsKeystoreFiles(t *testing.T) {
	t.Parallel()
	node := testenv.Anvil(t)
	rs := testenv.Redis(t, testenv.WithoutAOF())
	dir := t.TempDir()
	keys := testenv.AnvilKeys()
	ksKey := keys[5]
	b, err := keystore.EncryptKey(&keystore.Key{PrivateKey: ksKey, Address: crypto.PubkeyToAddress(ksKey.PublicKey)}, "pa55", 1<<10, 1)
	require.NoError(t, err)
	ksFile := filepath.Join(dir, "k5.json")
	require.NoError(t, os.WriteFile(ksFile, b, 0o600))
	pwFile := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(pwFile, []byte("pa55\n"), 0o600))
	hex6 := common.Bytes2Hex(crypto.FromECDSA(keys[6]))
	hex5 := common.Bytes2Hex(crypto.FromECDSA(ksKey))
	env := func(extra ...string) map[string]string {
		m := map[string]string{"REDIS_URL": rs.URL(), "RELAYQ_RPC_URL": node.URL(), "RELAYQ_KEYSTORE_FILES": ksFile}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	var out bytes.Buffer

	err = run(context.Background(), []string{"relayq", "worker"}, envOf(env("RELAYQ_KEYSTORE_PASSWORD", "not-the-pa55word")), &out, &out)
	require.ErrorContains(t, err, "k5.json: wrong password")
	require.NotContains(t, err.Error(), "not-the-pa55word", "the password is not echoed")
	err = run(context.Background(), []string{"relayq", "worker"}, envOf(env("RELAYQ_KEYSTORE_PASSWORD_FILE", pwFile, "RELAYQ_PRIVATE_KEYS", hex5)), &out, &out)
	require.ErrorContains(t, err, "configured twice")
	require.NotContains(t, err.Error(), hex5)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"relayq", "worker"}, envOf(env("RELAYQ_KEYSTORE_PASSWORD_FILE", pwFile, "RELAYQ_PRIVATE_KEYS", hex6)), &out, &out)
	}()
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer rdb.Close()
	reg := nonce.NewRegistry(rdb, "relayq:")
	want := map[common.Address]bool{crypto.PubkeyToAddress(ksKey.PublicKey): true, crypto.PubkeyToAddress(keys[6].PublicKey): true}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := reg.Signers(ctx)
		require.NoError(t, err)
		if len(got) == len(want) {
			for a := range got {
				require.True(t, want[a], "unexpected signer %s", a)
			}
			break
		}
		select {
		case err := <-done:
			t.Fatalf("worker exited: %v", err)
		default:
		}
		require.True(t, time.Now().Before(deadline), "the worker never registered both signers")
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not stop")
	}
}
