package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A deadline is an RFC 3339 timestamp or whole seconds from now, in the
// future and at most a year ahead; anything else is refused on its field.
func TestParseDeadline(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		raw  string
		want time.Time
		code string // "" when valid
	}{
		{`"2026-12-02T07:00:00Z"`, now.Add(time.Hour), ""},
		{`"2026-12-02T08:00:00+01:00"`, now.Add(time.Hour), ""},
		{`120`, now.Add(2 * time.Minute), ""},
		{`"120"`, now.Add(2 * time.Minute), ""},
		{`31536000`, now.Add(365 * 24 * time.Hour), ""},
		{`"2026-12-02T05:59:59Z"`, time.Time{}, "out_of_range"},
		{`"2026-12-02T06:00:00Z"`, time.Time{}, "out_of_range"},
		{`0`, time.Time{}, "out_of_range"},
		{`31536001`, time.Time{}, "out_of_range"},
		{`"2036-01-01T00:00:00Z"`, time.Time{}, "out_of_range"},
		{`-5`, time.Time{}, "invalid_deadline"},
		{`1.5`, time.Time{}, "invalid_deadline"},
		{`"tomorrow"`, time.Time{}, "invalid_deadline"},
		{`"2026-12-02 07:00:00"`, time.Time{}, "invalid_deadline"},
		{`true`, time.Time{}, "invalid_deadline"},
		{`{}`, time.Time{}, "invalid_deadline"},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			got, e := parseDeadline(json.RawMessage(tc.raw), now)
			if tc.code != "" {
				require.NotNil(t, e)
				require.Equal(t, tc.code, e.Code)
				require.Equal(t, "deadline", e.Field)
				return
			}
			require.Nil(t, e)
			require.True(t, tc.want.Equal(got), "got %s", got)
		})
	}
}

// POST /v1/jobs stores a deadline and shows it; a bad one is a 400 on the
// deadline field and stores nothing.
func TestJobDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	r := b.do(http.MethodPost, "/v1/jobs", fmt.Sprintf(`{"to":%q,"function":"increment()","deadline":%q}`, testCounter, at.Format(time.RFC3339)))
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	var j struct {
		Deadline time.Time `json:"deadline"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &j))
	require.True(t, at.Equal(j.Deadline), "got %s", j.Deadline)

	for _, d := range []string{`"2001-01-01T00:00:00Z"`, `"soon"`, `0`} {
		r := b.do(http.MethodPost, "/v1/jobs", fmt.Sprintf(`{"to":%q,"function":"increment()","deadline":%s}`, testCounter, d))
		require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
		require.Equal(t, "deadline", r.err(t).Field, d)
	}
}
