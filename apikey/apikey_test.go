package apikey

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	const k1, k2 = "key-one-0123456789abcdef", "key-two-0123456789abcdef"
	tests := []struct {
		name    string
		entries []string
		want    []Key
		wantErr string // substring; "" for none
	}{
		{name: "bare key is admin default", entries: []string{k1},
			want: []Key{{Name: "default", Key: k1, Admin: true, Bare: true}}},
		{name: "two bare keys share default", entries: []string{k1, k2},
			want: []Key{{Name: "default", Key: k1, Admin: true, Bare: true}, {Name: "default", Key: k2, Admin: true, Bare: true}}},
		{name: "named and admin", entries: []string{"alice:" + k1, "ops:" + k2 + ":admin"},
			want: []Key{{Name: "alice", Key: k1}, {Name: "ops", Key: k2, Admin: true}}},
		{name: "empty name", entries: []string{":" + k1}, wantErr: "entry 1: the name is empty"},
		{name: "bad name", entries: []string{"al ice:" + k1}, wantErr: "entry 1: the name must be"},
		{name: "empty key", entries: []string{"alice:"}, wantErr: "entry 1: the key is empty"},
		{name: "short key", entries: []string{"alice:short"}, wantErr: "shorter than 16"},
		{name: "bad role", entries: []string{"alice:" + k1 + ":root"}, wantErr: `must be "admin"`},
		{name: "too many parts", entries: []string{"a:b:c:d"}, wantErr: "4 colon-separated parts"},
		{name: "duplicate name", entries: []string{"alice:" + k1, "alice:" + k2}, wantErr: "entry 2: has the same name as entry 1"},
		{name: "duplicate key", entries: []string{"alice:" + k1, "bob:" + k1}, wantErr: "entry 2: has the same key as entry 1"},
		{name: "default named and bare", entries: []string{k1, "default:" + k2}, wantErr: `"default" is given to an entry`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.entries)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				for _, e := range tt.entries {
					for _, part := range strings.Split(e, ":") {
						if len(part) >= MinKeyLength {
							require.NotContains(t, err.Error(), part, "an error must never echo a key")
						}
					}
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestParseSecrets(t *testing.T) {
	const s = "secret-0123456789abcdef0123456789abcdef"
	tests := []struct {
		name    string
		entries []string
		want    map[string]string
		wantErr string
	}{
		{name: "none", want: map[string]string{}},
		{name: "two", entries: []string{"alice:" + s, "bob:x" + s}, want: map[string]string{"alice": s, "bob": "x" + s}},
		{name: "no colon", entries: []string{s}, wantErr: "entry 1: is not name:secret"},
		{name: "short", entries: []string{"alice:short"}, wantErr: "entry 1: the secret is 5 characters"},
		{name: "bad name", entries: []string{"a{b}:" + s}, wantErr: "entry 1: the name must be"},
		{name: "twice", entries: []string{"alice:" + s, "alice:" + s}, wantErr: "entry 2: names the same key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSecrets(tt.entries, 32)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.NotContains(t, err.Error(), s)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
