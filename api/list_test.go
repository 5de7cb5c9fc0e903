package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// GET /v1/jobs filters by signer and metadata, and refuses a bad filter
// with a 400 naming the parameter.
func TestListJobsFilters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var ids []string
	for i := range 3 {
		r := b.do(http.MethodPost, "/v1/jobs", fmt.Sprintf(`{"to":%q,"function":"increment()","metadata":{"order":"o-%d"}}`, testCounter, i))
		require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
		ids = append(ids, r.job(t).ID)
	}
	list := func(q string) []string {
		r := b.do(http.MethodGet, "/v1/jobs?"+q, "")
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		var body struct {
			Jobs []struct {
				ID string `json:"id"`
			} `json:"jobs"`
		}
		require.NoError(t, json.Unmarshal(r.Body, &body))
		out := []string{}
		for _, j := range body.Jobs {
			out = append(out, j.ID)
		}
		return out
	}
	require.Equal(t, []string{ids[1]}, list("metadata="+url.QueryEscape("order:o-1")))
	require.Equal(t, []string{ids[2], ids[1], ids[0]}, list("since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z"))
	require.Empty(t, list("until=2000-01-01T00:00:00Z"))
	require.Empty(t, list("from="+b.signer.Hex()), "queued jobs have no signer yet")
	require.Empty(t, list("signer="+b.signer.Hex()))
	require.Equal(t, []string{ids[2]}, list("metadata.order=o-2"))
	require.Equal(t, []string{ids[2], ids[1], ids[0]}, list("to="+strings.ToLower(testCounter)+"&created_after=2000-01-01T00:00:00Z"))
	require.Empty(t, list("to=0x0000000000000000000000000000000000000001"))

	for _, tc := range []struct{ query, code, field string }{
		{"since=yesterday", "invalid_time", "since"},
		{"until=2026-01-02", "invalid_time", "until"},
		{"from=0x12", "invalid_address", "from"},
		{"metadata=order", "invalid_metadata_filter", "metadata"},
		{"signer=0x12", "invalid_address", "from"},
		{"to=0x12", "invalid_address", "to"},
		{"from=0x0000000000000000000000000000000000000001&signer=0x0000000000000000000000000000000000000002", "conflicting_parameters", "signer"},
		{"metadata.=1", "invalid_metadata_filter", "metadata."},
		{"metadata=a:1&metadata.b=2", "invalid_metadata_filter", "metadata.b"},
		{"sender=0x12", "unknown_parameter", "sender"},
	} {
		r := b.do(http.MethodGet, "/v1/jobs?"+tc.query, "")
		require.Equal(t, http.StatusBadRequest, r.Status, tc.query)
		e := r.err(t)
		require.Equal(t, tc.code, e.Code, tc.query)
		require.Equal(t, tc.field, e.Field, tc.query)
	}
}
