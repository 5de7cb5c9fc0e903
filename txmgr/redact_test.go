package txmgr_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/rpc"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/txmgr"
)

// leakySecret is in every part of the node URLs below where providers put
// API keys; no error may carry it.
const leakySecret = "N0DE-S3CRET-7f3a"

// secretURL is host's URL with the secret in its user info, password, path
// and query.
func secretURL(host string) string {
	return fmt.Sprintf("http://u-%s:p-%s@%s/v2/%s?apikey=q-%s", leakySecret, leakySecret, host, leakySecret, leakySecret)
}

// echoingNode answers every JSON-RPC call (single or batch) with what the
// test's mode says, and repeats the URL it was asked on in its error
// texts, as providers' gateways do.
func echoingNode(t *testing.T, mode string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen := r.URL.RequestURI()
		switch mode {
		case "503", "429":
			w.WriteHeader(map[string]int{"503": 503, "429": 429}[mode])
			fmt.Fprintf(w, "upstream refused %s", seen)
			return
		case "hang":
			<-r.Context().Done()
			return
		}
		var e map[string]any
		switch mode {
		case "revert":
			e = map[string]any{"code": 3, "message": "execution reverted", "data": "0xdeadbeef"}
		case "nonce":
			e = map[string]any{"code": -32000, "message": "nonce too low (key " + seen + ")"}
		}
		answer := func(id json.RawMessage) map[string]any {
			return map[string]any{"jsonrpc": "2.0", "id": id, "error": e}
		}
		w.Header().Set("Content-Type", "application/json")
		if strings.HasPrefix(strings.TrimSpace(string(body)), "[") {
			var reqs []struct{ ID json.RawMessage }
			require.NoError(t, json.Unmarshal(body, &reqs))
			out := make([]map[string]any, len(reqs))
			for i, q := range reqs {
				out[i] = answer(q.ID)
			}
			_ = json.NewEncoder(w).Encode(out)
			return
		}
		var q struct{ ID json.RawMessage }
		require.NoError(t, json.Unmarshal(body, &q))
		_ = json.NewEncoder(w).Encode(answer(q.ID))
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// deadPort is a 127.0.0.1 address nothing listens on.
func deadPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// Every error a node call returns names the node by scheme and host only,
// single endpoint or several, whatever went wrong; and it is classified
// exactly as the raw error go-ethereum returned for the same call.
func TestNodeErrorsDoNotCarryTheURL(t *testing.T) {
	t.Parallel()
	tx := types.NewTx(&types.DynamicFeeTx{ChainID: big.NewInt(1), Nonce: 1, Gas: 21000, GasFeeCap: big.NewInt(1), GasTipCap: big.NewInt(1)})
	to := common.HexToAddress("0x000000000000000000000000000000000000dEaD")
	hash := common.HexToHash("0x01")
	for _, tc := range []struct {
		name  string
		host  func(t *testing.T) string
		call  func(ctx context.Context, b txmgr.Backend) error
		class txmgr.Class
		fault bool // the node failed, rather than answered
	}{
		{"node down", deadPort, func(ctx context.Context, b txmgr.Backend) error { _, err := b.ChainID(ctx); return err }, txmgr.ClassRetryable, true},
		{"node down, broadcast", deadPort, func(ctx context.Context, b txmgr.Backend) error { return b.SendTransaction(ctx, tx) }, txmgr.ClassRetryable, true},
		{"node down, batch", deadPort, func(ctx context.Context, b txmgr.Backend) error {
			_, err := b.TransactionReceipts(ctx, []common.Hash{hash})
			return err
		}, txmgr.ClassRetryable, true},
		{"http 503 echoing the url", func(t *testing.T) string { return echoingNode(t, "503") }, func(ctx context.Context, b txmgr.Backend) error {
			_, err := b.BalanceAt(ctx, to, nil)
			return err
		}, txmgr.ClassRetryable, true},
		{"http 429 echoing the url", func(t *testing.T) string { return echoingNode(t, "429") }, func(ctx context.Context, b txmgr.Backend) error {
			_, err := b.HeaderByNumber(ctx, nil)
			return err
		}, txmgr.ClassRetryable, true},
		{"timeout", func(t *testing.T) string { return echoingNode(t, "hang") }, func(ctx context.Context, b txmgr.Backend) error {
			_, err := b.NonceAt(ctx, to, nil)
			return err
		}, txmgr.ClassRetryable, true},
		{"revert", func(t *testing.T) string { return echoingNode(t, "revert") }, func(ctx context.Context, b txmgr.Backend) error {
			_, err := b.CallContract(ctx, ethereum.CallMsg{To: &to}, nil)
			return err
		}, txmgr.ClassPermanent, false},
		{"nonce too low echoing the url", func(t *testing.T) string { return echoingNode(t, "nonce") }, func(ctx context.Context, b txmgr.Backend) error { return b.SendTransaction(ctx, tx) }, txmgr.ClassNonceTooLow, false},
		{"batch element echoing the url", func(t *testing.T) string { return echoingNode(t, "nonce") }, func(ctx context.Context, b txmgr.Backend) error {
			_, err := b.TransactionsKnown(ctx, []common.Hash{hash, hash})
			return err
		}, txmgr.ClassNonceTooLow, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			host := tc.host(t)
			url := secretURL(host)
			const timeout = 300 * time.Millisecond

			// What go-ethereum says on its own, to compare with.
			raw, err := ethclient.DialContext(ctx, url)
			require.NoError(t, err)
			t.Cleanup(raw.Close)
			rawCtx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			rawErr := rawCall(rawCtx, raw, tc.name)

			one, err := txmgr.Dial(ctx, url, timeout)
			require.NoError(t, err)
			t.Cleanup(one.Close)
			many, err := txmgr.DialMany(ctx, []string{url, secretURL(deadPort(t))}, timeout)
			require.NoError(t, err)
			t.Cleanup(many.Close)

			for name, b := range map[string]txmgr.Backend{"Dial": one, "DialMany": many} {
				err := tc.call(ctx, b)
				require.Error(t, err, name)
				require.NotContains(t, err.Error(), leakySecret, name)
				require.NotContains(t, fmt.Sprintf("%+v", err), leakySecret, name)
				if strings.HasPrefix(tc.name, "node down") {
					require.Contains(t, err.Error(), "127.0.0.1", "%s: the error still says which node: %s", name, err)
				}
				require.Equal(t, tc.class, txmgr.Classify(err), "%s: %s", name, err)
				require.Equal(t, tc.fault, txmgr.IsFault(err), "%s: %s", name, err)
				if tc.class == txmgr.ClassPermanent {
					var de rpc.DataError
					require.True(t, errors.As(err, &de), name)
					data, ok := txmgr.RevertData(err)
					require.True(t, ok, name)
					require.Equal(t, []byte{0xde, 0xad, 0xbe, 0xef}, data, name)
				}
				// A Multi's last fault may be its second (dead) endpoint's.
				if rawErr != nil && name == "Dial" {
					rc, rr := txmgr.Explain(rawErr)
					gc, gr := txmgr.Explain(err)
					require.Equal(t, rc, gc, "%s: %s vs %s", name, rawErr, err)
					require.Equal(t, rr, gr, "%s: %s vs %s", name, rawErr, err)
				}
			}
			for _, h := range many.Health() {
				require.NotContains(t, h.Name+h.LastError, leakySecret)
			}
		})
	}
}

// rawCall makes the call of a case named name straight through ethclient
// (only the single calls, whose raw error is one error).
func rawCall(ctx context.Context, c *ethclient.Client, name string) error {
	to := common.HexToAddress("0x000000000000000000000000000000000000dEaD")
	switch name {
	case "node down":
		_, err := c.ChainID(ctx)
		return err
	case "http 503 echoing the url":
		_, err := c.BalanceAt(ctx, to, nil)
		return err
	case "http 429 echoing the url":
		_, err := c.HeaderByNumber(ctx, nil)
		return err
	case "timeout":
		_, err := c.NonceAt(ctx, to, nil)
		return err
	case "revert":
		_, err := c.CallContract(ctx, ethereum.CallMsg{To: &to}, nil)
		return err
	}
	return nil
}

// A URL the node library cannot even dial is not repeated either.
func TestDialErrorDoesNotCarryTheURL(t *testing.T) {
	t.Parallel()
	_, err := txmgr.Dial(context.Background(), "ftp://u-"+leakySecret+"@x.example/v2/"+leakySecret, time.Second)
	require.Error(t, err)
	require.NotContains(t, err.Error(), leakySecret)
	_, err = txmgr.DialNode(context.Background(), []string{"ftp://x.example/" + leakySecret, "ftp://y.example/" + leakySecret}, time.Second, nil)
	require.Error(t, err)
	require.NotContains(t, err.Error(), leakySecret)
}
