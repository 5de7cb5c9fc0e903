package nodeurl_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/nodeurl"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ raw, want string }{
		{"https://x.example/v2/KEY", "https://x.example/…"},
		{"https://user:pass@x.example:8545/rpc?key=K#f", "https://x.example:8545/…"},
		{"wss://x.example/ws/v3/abcdef", "wss://x.example/…"},
		{"http://127.0.0.1:8545", "http://127.0.0.1:8545"},
		{"http://127.0.0.1:8545/", "http://127.0.0.1:8545/"},
		{"http://[::1]:8545/k", "http://[::1]:8545/…"},
		{"  https://x.example?apikey=K  ", "https://x.example/…"},
		{"x.example/v2/KEY", nodeurl.Elided},       // no scheme: which part is the key?
		{"https://x.exa mple/%zz", nodeurl.Elided}, // does not parse
		{"", nodeurl.Elided},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			require.Equal(t, tc.want, nodeurl.Redact(tc.raw))
		})
	}
}

func TestScrub(t *testing.T) {
	t.Parallel()
	const raw = "https://us3r-S3CRET:p4ss-S3CRET@x.example:8443/v2/path-S3CRET?apikey=query-S3CRET"
	for _, tc := range []struct{ name, text string }{
		{"as given", `Post "` + raw + `": dial tcp 127.0.0.1:8443: connect: connection refused`},
		{"password masked by net/http", `Post "https://us3r-S3CRET:***@x.example:8443/v2/path-S3CRET?apikey=query-S3CRET": EOF`},
		{"redacted by url.URL", "https://us3r-S3CRET:xxxxx@x.example:8443/v2/path-S3CRET?apikey=query-S3CRET"},
		{"parts alone", "401: bad key path-S3CRET for user us3r-S3CRET (p4ss-S3CRET) /v2/path-S3CRET apikey=query-S3CRET"},
		{"two urls", raw + " then " + raw},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := nodeurl.Scrub(tc.text, "http://127.0.0.1:1", raw)
			require.NotContains(t, got, "S3CRET", got)
			require.NotContains(t, got, "***@", got)
		})
	}
	require.Equal(t, `Post "https://x.example:8443/…": EOF`, nodeurl.Scrub(`Post "`+raw+`": EOF`, raw))
	// Nothing to hide: the text stays as it is; parts too short to be
	// a secret are left where they stand alone.
	require.Equal(t, "dial http://127.0.0.1:8545: refused", nodeurl.Scrub("dial http://127.0.0.1:8545: refused", "http://127.0.0.1:8545"))
	require.Equal(t, "method /rpc not found at http://h/…", nodeurl.Scrub("method /rpc not found at http://h/rpc", "http://h/rpc"))
}

// What Go's HTTP client really says about a URL with secrets, scrubbed.
func TestScrubAnHTTPClientError(t *testing.T) {
	t.Parallel()
	const raw = "http://us3r-S3CRET:p4ss-S3CRET@127.0.0.1:1/v2/path-S3CRET?apikey=query-S3CRET"
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, raw, strings.NewReader("{}"))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	if resp != nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	require.Error(t, err)
	require.Contains(t, err.Error(), "S3CRET", "the client repeats the URL: nothing to test otherwise")
	got := nodeurl.Scrub(err.Error(), raw)
	require.NotContains(t, got, "S3CRET")
	require.Contains(t, got, "http://127.0.0.1:1/…")
}
