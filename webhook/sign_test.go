package webhook

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const testSecret = "whsec_test_0123456789abcdef0123456789"

// A fixed vector, computed independently (Python's hmac), pins the format.
func TestSignKnownVector(t *testing.T) {
	t.Parallel()
	got := Sign(testSecret, time.Unix(1700000000, 0), []byte(`{"id":"x"}`))
	require.Equal(t, "t=1700000000,v1=3eb181d2c88aedeec97315502c5e1bdf6e212c813220c6385df967c17ef5b501", got)
}

func TestVerify(t *testing.T) {
	t.Parallel()
	body := []byte(`{"id":"job.3","type":"job.confirmed"}`)
	at := time.Unix(1700000000, 0)
	sig := Sign(testSecret, at, body)
	other := Sign("another-secret-0123456789abcdef012345", at, body)
	cases := []struct {
		name   string
		header string
		body   []byte
		secret string
		now    time.Time
		tol    time.Duration
		want   error
	}{
		{"valid", sig, body, testSecret, at.Add(time.Minute), 5 * time.Minute, nil},
		{"valid, spaces and an unknown scheme", " t=1700000000 , v0=abcd, " + sig[len("t=1700000000,"):], body, testSecret, at, time.Minute, nil},
		{"one of several v1 matches (secret rotation)", other + "," + sig[len("t=1700000000,"):], body, testSecret, at, time.Minute, nil},
		{"tampered body", sig, append([]byte(nil), append(body, ' ')...), testSecret, at, time.Minute, ErrSignature},
		{"wrong secret", sig, body, "wrong-secret-0123456789abcdef0123456", at, time.Minute, ErrSignature},
		{"too old", sig, body, testSecret, at.Add(6 * time.Minute), 5 * time.Minute, ErrTimestamp},
		{"from the future", sig, body, testSecret, at.Add(-6 * time.Minute), 5 * time.Minute, ErrTimestamp},
		{"no tolerance: age not checked", sig, body, testSecret, at.Add(100 * time.Hour), 0, nil},
		{"replayed timestamp with its signature on another timestamp", "t=1700000001" + sig[len("t=1700000000"):], body, testSecret, at, time.Minute, ErrSignature},
		{"empty header", "", body, testSecret, at, time.Minute, ErrNoSignature},
		{"no v1", "t=1700000000", body, testSecret, at, time.Minute, ErrNoSignature},
		{"no t", sig[len("t=1700000000,"):], body, testSecret, at, time.Minute, ErrNoSignature},
		{"garbage", "hello", body, testSecret, at, time.Minute, ErrNoSignature},
		{"v1 not hex", "t=1700000000,v1=zz", body, testSecret, at, time.Minute, ErrNoSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := verifyAt(c.secret, c.header, c.body, c.tol, c.now)
			if c.want == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, c.want)
			}
		})
	}
	// The exported Verify uses the clock.
	require.NoError(t, Verify(testSecret, Sign(testSecret, time.Now(), body), body, time.Minute))
	require.ErrorIs(t, Verify(testSecret, sig, body, time.Minute), ErrTimestamp)
}
