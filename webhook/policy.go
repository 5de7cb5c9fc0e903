package webhook

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// MaxURLLength is the longest webhook URL relayq accepts.
const MaxURLLength = 2048

// blocked lists the ranges a webhook may not reach unless the deployment
// allows them: what an attacker would aim a webhook at to reach the inside
// of the network (SSRF). The first match names the reason.
var blocked = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified (this network)"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (CGNAT)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.169.254/32"), "cloud metadata"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"}, // and 255.255.255.255
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible (deprecated)"},
	{netip.MustParsePrefix("fd00:ec2::254/128"), "cloud metadata"},
	// RFC 8215: a translator of the operator's own reaches IPv4 addresses
	// by a mapping we cannot see, internal ones included.
	{netip.MustParsePrefix("64:ff9b:1::/48"), "NAT64 local-use"},
	{netip.MustParsePrefix("fc00::/7"), "private (unique local)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local (deprecated)"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// IPv6 prefixes that carry an IPv4 address a gateway would reach for us.
var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96") // the address in the last 4 bytes
	sixToFour = netip.MustParsePrefix("2002::/16")    // the address in bytes 2..5
)

// RefusedError is a connection the policy refused.
type RefusedError struct {
	Addr   netip.Addr
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("webhook address %s is %s: refused (RELAYQ_WEBHOOK_ALLOW_CIDRS can allow it)", e.Addr, e.Reason)
}

// IsRefused reports whether err is, or wraps, a refusal by the policy.
func IsRefused(err error) bool {
	var r *RefusedError
	return errors.As(err, &r)
}

// Policy decides which addresses webhooks may reach: every public address,
// and the blocked ranges only where an allowed prefix covers them.
type Policy struct {
	allow []netip.Prefix
}

// NewPolicy returns the policy that also allows the given prefixes.
func NewPolicy(allow []netip.Prefix) *Policy {
	return &Policy{allow: append([]netip.Prefix(nil), allow...)}
}

// ParseCIDRs reads a comma-separated list of CIDR prefixes (a bare address
// counts as a prefix of its own length), as RELAYQ_WEBHOOK_ALLOW_CIDRS
// gives it.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q is not a CIDR prefix such as 127.0.0.0/8 or fd00::/8", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Check returns nil if a webhook may connect to a, or a *RefusedError.
func (p *Policy) Check(a netip.Addr) error {
	a = a.WithZone("")
	if p != nil {
		for _, pr := range p.allow {
			if pr.Contains(a) || a.Is4In6() && pr.Contains(a.Unmap()) {
				return nil
			}
		}
	}
	if why := blockedReason(a); why != "" {
		return &RefusedError{Addr: a, Reason: why}
	}
	return nil
}

func blockedReason(a netip.Addr) string {
	a = a.Unmap()
	for _, b := range blocked {
		if b.prefix.Contains(a) {
			return b.why
		}
	}
	b := a.As16()
	var embedded netip.Addr
	switch {
	case nat64.Contains(a):
		embedded = netip.AddrFrom4([4]byte(b[12:16]))
	case sixToFour.Contains(a):
		embedded = netip.AddrFrom4([4]byte(b[2:6]))
	default:
		return ""
	}
	if why := blockedReason(embedded); why != "" {
		return why + " (embedded in " + a.String() + ")"
	}
	return ""
}

// URLError is a webhook URL that is not acceptable as given.
type URLError struct{ Reason string }

func (e *URLError) Error() string { return "webhook_url " + e.Reason }

// CheckURL checks a webhook URL when a job is accepted: an absolute http
// or https URL of at most MaxURLLength characters, without user info. A
// host that is a literal address, or localhost, must pass the policy (a
// *RefusedError otherwise). Host names are checked again, and for real, at
// every connection: see Client.
func (p *Policy) CheckURL(raw string) error {
	if len(raw) > MaxURLLength {
		return &URLError{fmt.Sprintf("is %d characters; at most %d", len(raw), MaxURLLength)}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return &URLError{"is not a valid URL"}
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return &URLError{"must be an absolute http:// or https:// URL"}
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return &URLError{"must be an absolute http:// or https:// URL with a host"}
	}
	if u.User != nil {
		return &URLError{"must not carry user info (user:password@): put a token in the path or query if the receiver needs one"}
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return &URLError{fmt.Sprintf("has an invalid port %q", port)}
		}
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if a, err := netip.ParseAddr(host); err == nil {
		return p.Check(a)
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		// It resolves to loopback, v4 or v6: usable if either is allowed.
		err := p.Check(netip.MustParseAddr("127.0.0.1"))
		if err != nil && p.Check(netip.IPv6Loopback()) == nil {
			return nil
		}
		return err
	}
	// A numeric last label is no host name (top-level domains are never
	// numeric) but an address in a form some resolvers accept (127.1,
	// 0x7f.1, 2130706433): refuse it rather than guess what it means.
	labels := strings.Split(host, ".")
	if last := labels[len(labels)-1]; last == "" || last[0] >= '0' && last[0] <= '9' {
		return &URLError{fmt.Sprintf("host %q is neither a host name nor an IP address in standard form", u.Hostname())}
	}
	return nil
}
