// Package nodeurl keeps node URLs out of what relayq says. Providers put
// API keys in a node URL's user info, path or query, and Go's HTTP client
// (so go-ethereum's errors) repeats the whole URL: Redact gives the form
// that may be shown, and Scrub takes a URL's secrets out of a text.
package nodeurl

import (
	"net/url"
	"sort"
	"strings"
)

// Elided stands for what Redact and Scrub removed.
const Elided = "…"

// Redact returns raw with only its scheme and host[:port]:
// "https://x.example/v2/KEY?k=v" is "https://x.example/…". The "/…" says
// something was dropped; a URL with nothing to drop stays as it is. What
// does not parse as a URL with a host is Elided as a whole: it cannot be
// told which part of it is the secret.
func Redact(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return Elided
	}
	out := u.Scheme + "://" + u.Host
	if u.User != nil || u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		out += "/" + Elided
	} else if u.Path == "/" {
		out += "/"
	}
	return out
}

// minFragment is the shortest part of a URL that Scrub removes on its own,
// wherever it appears: shorter ones ("/", "v2", a user "me") would maul the
// text and are not secrets.
const minFragment = 6

// Scrub returns text with every spelling of each URL in raws (as given, as
// Go re-encodes it, with the password masked as net/http does) replaced by
// its Redact form, and then every secret-bearing part of one (user,
// password, path, query, their long path segments and query values) that
// still appears on its own replaced by Elided.
func Scrub(text string, raws ...string) string {
	var wholes, parts []string // old, new pairs
	for _, raw := range raws {
		w, p := replacements(raw)
		wholes, parts = append(wholes, w...), append(parts, p...)
	}
	if len(wholes) == 0 && len(parts) == 0 {
		return text
	}
	// strings.Replacer tries its pairs in order at each position: whole
	// URLs first, longest first, then the parts.
	return strings.NewReplacer(append(byLength(wholes), byLength(parts)...)...).Replace(text)
}

// replacements lists the (old, new) pairs of one URL: its spellings, each
// to be replaced by its Redact form, and its secret-bearing parts.
func replacements(raw string) (wholes, parts []string) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, nil
	}
	red := Redact(raw)
	spellings := []string{raw}
	var secrets []string
	if u, err := url.Parse(raw); err == nil {
		spellings = append(spellings, u.String(), u.Redacted())
		if u.User != nil {
			name := u.User.Username()
			secrets = append(secrets, name, url.PathEscape(name), url.QueryEscape(name))
			if pw, has := u.User.Password(); has {
				// net/http's stripPassword, unescaped "***".
				spellings = append(spellings, strings.Replace(u.Redacted(), ":xxxxx@", ":***@", 1))
				secrets = append(secrets, pw, url.PathEscape(pw), url.QueryEscape(pw))
			}
		}
		if u.Path != "" && u.Path != "/" {
			secrets = append(secrets, u.Path, u.EscapedPath())
			secrets = append(secrets, strings.Split(u.Path, "/")...)
		}
		if u.RawQuery != "" {
			secrets = append(secrets, u.RawQuery)
			for _, vs := range u.Query() {
				secrets = append(secrets, vs...)
			}
		}
		secrets = append(secrets, u.Opaque, u.Fragment)
	}
	for _, s := range spellings {
		if s != red {
			wholes = append(wholes, s, red)
		}
	}
	for _, s := range secrets {
		if len(s) >= minFragment {
			parts = append(parts, s, Elided)
		}
	}
	return wholes, parts
}

// byLength sorts (old, new) pairs by old, longest first, and drops
// repeated olds.
func byLength(pairs []string) []string {
	type pair struct{ old, new string }
	var ps []pair
	seen := map[string]bool{}
	for i := 0; i+1 < len(pairs); i += 2 {
		if !seen[pairs[i]] {
			seen[pairs[i]] = true
			ps = append(ps, pair{pairs[i], pairs[i+1]})
		}
	}
	sort.SliceStable(ps, func(i, j int) bool { return len(ps[i].old) > len(ps[j].old) })
	out := make([]string, 0, 2*len(ps))
	for _, p := range ps {
		out = append(out, p.old, p.new)
	}
	return out
}
