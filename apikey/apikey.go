// Package apikey parses relayq's API keys and per-key webhook secrets.
// Each API key is a principal: it has a name (recorded on the jobs it
// creates, never the key itself) and is either an admin or not. config
// checks the entries at start; the API and the worker use what it parses.
package apikey

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// DefaultName is the name of a bare key (an RELAYQ_API_KEYS entry without
// a name): such keys are admins named "default", as every key was before
// keys had names.
const DefaultName = "default"

// MinKeyLength is the shortest key accepted.
const MinKeyLength = 16

// nameRE is what a key name may be: it appears in Redis keys and in job
// records, so no colons, braces, slashes or spaces.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// ValidName reports whether name may name an API key.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// Key is one API key and the principal it authenticates as.
type Key struct {
	Name  string
	Key   string
	Admin bool
	// Bare is true for an entry given without a name (an admin named
	// DefaultName): its idempotency keys stay scoped as before names.
	Bare bool
}

// Parse reads RELAYQ_API_KEYS entries: "name:key", "name:key:admin", or a
// bare "key" (an admin named DefaultName). It reports every bad entry by
// its position only: a name could be a key written in the wrong place.
func Parse(entries []string) ([]Key, error) {
	var errs []error
	bad := func(i int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("entry %d: %s", i+1, fmt.Sprintf(format, args...)))
	}
	out := make([]Key, 0, len(entries))
	names, keys := map[string]int{}, map[string]int{}
	bare, namedDefault := false, false
	for i, e := range entries {
		parts := strings.Split(e, ":")
		var k Key
		switch {
		case len(parts) == 1:
			k = Key{Name: DefaultName, Key: parts[0], Admin: true, Bare: true}
		case len(parts) == 2:
			k = Key{Name: parts[0], Key: parts[1]}
		case len(parts) == 3 && parts[2] == "admin":
			k = Key{Name: parts[0], Key: parts[1], Admin: true}
		case len(parts) == 3:
			bad(i, "the third part must be \"admin\" (entries are name:key or name:key:admin)")
			continue
		default:
			bad(i, "has %d colon-separated parts; entries are key, name:key or name:key:admin", len(parts))
			continue
		}
		switch {
		case k.Name == "":
			bad(i, "the name is empty (entries are name:key or name:key:admin)")
			continue
		case !ValidName(k.Name):
			bad(i, "the name must be 1 to 64 of a-z A-Z 0-9 _ . -")
			continue
		case k.Key == "":
			bad(i, "the key is empty")
			continue
		case len(k.Key) < MinKeyLength:
			bad(i, "the key is shorter than %d characters", MinKeyLength)
			continue
		}
		if j, ok := keys[k.Key]; ok {
			bad(i, "has the same key as entry %d", j+1)
			continue
		}
		keys[k.Key] = i
		if k.Bare {
			bare = true
		} else {
			if j, ok := names[k.Name]; ok {
				bad(i, "has the same name as entry %d", j+1)
				continue
			}
			names[k.Name] = i
			namedDefault = namedDefault || k.Name == DefaultName
		}
		out = append(out, k)
	}
	if bare && namedDefault {
		errs = append(errs, fmt.Errorf("the name %q is given to an entry, and to the keys without a name: rename that entry", DefaultName))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// ParseSecrets reads RELAYQ_WEBHOOK_SECRETS entries, "name:secret": the
// secret that signs the webhook events of that key's jobs. It reports
// every bad entry by its position only, never a name or a secret. minLen is
// the shortest secret accepted.
func ParseSecrets(entries []string, minLen int) (map[string]string, error) {
	var errs []error
	out := map[string]string{}
	for i, e := range entries {
		name, secret, ok := strings.Cut(e, ":")
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("entry %d: is not name:secret", i+1))
		case !ValidName(name):
			errs = append(errs, fmt.Errorf("entry %d: the name must be 1 to 64 of a-z A-Z 0-9 _ . -", i+1))
		case len(secret) < minLen:
			errs = append(errs, fmt.Errorf("entry %d: the secret is %d characters; at least %d (e.g. openssl rand -hex 32)", i+1, len(secret), minLen))
		case out[name] != "":
			errs = append(errs, fmt.Errorf("entry %d: names the same key as an earlier entry", i+1))
		default:
			out[name] = secret
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
