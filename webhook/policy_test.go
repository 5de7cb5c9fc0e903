package webhook

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPolicyRefusesInternalAddresses(t *testing.T) {
	t.Parallel()
	refused := map[string]string{
		"127.0.0.1":              "loopback",
		"127.255.0.9":            "loopback",
		"::1":                    "loopback",
		"10.1.2.3":               "private",
		"172.16.0.1":             "private",
		"172.31.255.255":         "private",
		"192.168.1.1":            "private",
		"fc00::1":                "private",
		"fd12:3456::1":           "private",
		"169.254.169.254":        "cloud metadata",
		"169.254.1.1":            "link-local",
		"fd00:ec2::254":          "cloud metadata",
		"fe80::1":                "link-local",
		"fe80::1%eth0":           "link-local",
		"100.64.0.1":             "CGNAT",
		"100.100.100.200":        "CGNAT", // another cloud's metadata
		"0.0.0.0":                "unspecified",
		"::":                     "unspecified",
		"224.0.0.1":              "multicast",
		"ff02::1":                "multicast",
		"255.255.255.255":        "reserved",
		"::ffff:127.0.0.1":       "loopback", // IPv4-mapped
		"::ffff:10.0.0.1":        "private",
		"::7f00:1":               "IPv4-compatible",
		"64:ff9b::a9fe:a9fe":     "cloud metadata (embedded", // NAT64 of 169.254.169.254
		"2002:7f00:1::":          "loopback (embedded",       // 6to4 of 127.0.0.1
		"2002:c0a8:101::1":       "private (embedded",
		"fec0::1":                "site-local",
		"198.18.0.1":             "benchmarking",
		"::ffff:169.254.169.254": "cloud metadata",
		"::ffff:100.64.0.1":      "CGNAT",
		"192.0.0.170":            "IETF",
		"64:ff9b:1::a9fe:a9fe":   "NAT64 local-use", // any v4 behind the operator's translator
		"64:ff9b:1::808:808":     "NAT64 local-use", // even a public one: the mapping is not ours to read
		"64:ff9b:1:ffff::1":      "NAT64 local-use",
	}
	p := NewPolicy(nil)
	for s, why := range refused {
		err := p.Check(netip.MustParseAddr(s))
		require.True(t, IsRefused(err), "%s should be refused", s)
		require.Contains(t, err.Error(), why, s)
	}
	for _, s := range []string{"8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "192.169.0.1", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::1", "64:ff9b:2::1"} {
		require.NoError(t, p.Check(netip.MustParseAddr(s)), s)
	}
	var nilPolicy *Policy
	require.True(t, IsRefused(nilPolicy.Check(netip.MustParseAddr("127.0.0.1"))))
}

func TestPolicyAllowList(t *testing.T) {
	t.Parallel()
	allow, err := ParseCIDRs(" 127.0.0.0/8, 10.9.8.7 ,fd00::/8,")
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.9.8.7/32"), netip.MustParsePrefix("fd00::/8"),
	}, allow)
	p := NewPolicy(allow)
	for _, s := range []string{"127.0.0.1", "::ffff:127.0.0.1", "10.9.8.7", "fd00:ec2::254"} {
		require.NoError(t, p.Check(netip.MustParseAddr(s)), s)
	}
	for _, s := range []string{"::1", "10.9.8.8", "169.254.169.254", "fc00::1"} {
		require.True(t, IsRefused(p.Check(netip.MustParseAddr(s))), s)
	}

	masked, err := ParseCIDRs("10.1.2.3/8")
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, masked)
	none, err := ParseCIDRs("")
	require.NoError(t, err)
	require.Empty(t, none)
	for _, bad := range []string{"nope", "10.0.0.0/33", "fe80::1%eth0", "127.0.0.0/8,example.com"} {
		_, err := ParseCIDRs(bad)
		require.Error(t, err, bad)
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	const (
		ok      = ""
		invalid = "invalid"
		refused = "refused"
	)
	cases := map[string]string{
		"https://example.com/hook":                 ok,
		"http://example.com:8080/x?token=abc#frag": ok,
		"https://8.8.8.8/hook":                     ok,
		"https://[2606:4700::1111]/hook":           ok,
		"ftp://example.com/":                       invalid,
		"/relative/path":                           invalid,
		"example.com/hook":                         invalid,
		"mailto:ops@example.com":                   invalid,
		"http:///path":                             invalid,
		"http://user:pw@example.com/":              invalid,
		"http://user@example.com/":                 invalid,
		"http://example.com:99999/":                invalid,
		"http://example.com:0/":                    invalid,
		"http://2130706433/":                       invalid,
		"http://127.1/":                            invalid,
		"http://0x7f.1/":                           invalid,
		"http://example.123/":                      invalid,
		"http://exa mple.com/":                     invalid,
		"http://127.0.0.1/":                        refused,
		"http://127.0.0.1:8080/hook":               refused,
		"http://[::1]:80/":                         refused,
		"http://[::ffff:127.0.0.1]/":               refused,
		"http://localhost/":                        refused,
		"http://LocalHost./":                       refused,
		"http://api.localhost:9000/":               refused,
		"http://169.254.169.254/latest/meta-data":  refused,
		"http://10.0.0.1/":                         refused,
		"http://[fd00:ec2::254]/":                  refused,
		"http://0.0.0.0:8080/":                     refused,
		"https://example.com/" + strings.Repeat("a", MaxURLLength): invalid,
	}
	p := NewPolicy(nil)
	for u, want := range cases {
		err := p.CheckURL(u)
		var ue *URLError
		switch want {
		case ok:
			require.NoError(t, err, u)
		case invalid:
			require.ErrorAs(t, err, &ue, "%s: %v", u, err)
		case refused:
			require.True(t, IsRefused(err), "%s: %v", u, err)
		}
	}

	// With loopback allowed (relayq dev, tests), local receivers are fine.
	lo := NewPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	for _, u := range []string{"http://127.0.0.1:8080/hook", "http://localhost:8080/hook"} {
		require.NoError(t, lo.CheckURL(u), u)
	}
	require.True(t, IsRefused(lo.CheckURL("http://10.0.0.1/")))
}
