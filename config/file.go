package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/relayq/relayq/internal/nodeurl"
)

// ConfigFileVar names the variable holding the path of relayq.yaml, the
// file that lists the chains to serve (docs/config.md).
const ConfigFileVar = "RELAYQ_CONFIG"

// Poll interval derived from a file chain's block_time (half of it, within
// these bounds) when the chain does not set poll_interval.
const (
	MinDerivedPollInterval = 100 * time.Millisecond
	MaxDerivedPollInterval = 5 * time.Second
)

// fileDoc is relayq.yaml. Every key is optional to the decoder (Check
// reports what is missing); unknown keys are errors.
type fileDoc struct {
	Chains []fileChain `yaml:"chains"`
	// ArchiveURL is the deployment's PostgreSQL archive (see
	// Config.ArchiveURL); read by fileArchiveURL.
	ArchiveURL string `yaml:"archive_url"`
}

// fileArchiveURL reads archive_url from relayq.yaml at path ("" when
// absent). The file's other problems are readChainsFile's to report.
func fileArchiveURL(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "" // reported by readChainsFile
	}
	var doc struct {
		ArchiveURL string `yaml:"archive_url"`
	}
	if yaml.Unmarshal(b, &doc) != nil {
		return ""
	}
	return strings.TrimSpace(doc.ArchiveURL)
}

type fileChain struct {
	Name          string         `yaml:"name"`
	ChainID       uint64         `yaml:"chain_id"`
	RPCURLs       []string       `yaml:"rpc_urls"`
	Confirmations *uint64        `yaml:"confirmations"`
	BlockTime     time.Duration  `yaml:"block_time"`
	PollInterval  *time.Duration `yaml:"poll_interval"`
	Fees          fileFees       `yaml:"fees"`
	Signers       fileSigners    `yaml:"signers"`
}

type fileFees struct {
	MaxFeeGwei       *uint64 `yaml:"max_fee_gwei"`
	BumpPercent      *uint64 `yaml:"bump_percent"`
	StuckAfterBlocks *uint64 `yaml:"stuck_after_blocks"`
}

type fileSigners struct {
	PrivateKeysEnv       string   `yaml:"private_keys_env"`
	KeystoreFiles        []string `yaml:"keystore_files"`
	KeystorePasswordFile string   `yaml:"keystore_password_file"`
	KeystorePasswordEnv  string   `yaml:"keystore_password_env"`
	MaxInFlight          *uint64  `yaml:"max_in_flight"`
	KMSKeyIDs            []string `yaml:"kms_key_ids"`
}

// readChainsFile reads relayq.yaml at path into its chains (Namespaced),
// with defaults applied and the variables it names read through getenv.
// used holds those variables' names. errs holds every problem found while
// reading; the values themselves are left to Check.
func readChainsFile(path string, getenv func(string) string) (chains []Chain, used map[string]bool, errs []error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, []error{fmt.Errorf("%s: %w", ConfigFileVar, err)}
	}
	inFile := func(format string, args ...any) error {
		return fmt.Errorf("%s: %s: %s", ConfigFileVar, path, fmt.Sprintf(format, args...))
	}
	// The node tree places a decoding error in its chain, by line.
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, nil, []error{inFile("%v", err)}
	}
	var doc fileDoc
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err = dec.Decode(&doc)
	var te *yaml.TypeError
	switch {
	case errors.Is(err, io.EOF): // an empty file: no chains, below
	case errors.As(err, &te):
		// The decoder went on past each of these: report them all.
		lines := chainLines(&root)
		for _, msg := range te.Errors {
			i := lines.chainAt(msg)
			if i < 0 || i >= len(doc.Chains) {
				errs = append(errs, inFile("%s", yamlTypes.Replace(msg)))
				continue
			}
			errs = append(errs, fmt.Errorf("%s %s: %s", ConfigFileVar, chainLabel(i, doc.Chains[i].Name), yamlTypes.Replace(msg)))
		}
	case err != nil:
		return nil, nil, []error{inFile("%v", err)}
	default:
		var more yaml.Node
		if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
			errs = append(errs, inFile("holds more than one YAML document; list every chain under the first one's chains:"))
		}
	}
	if len(doc.Chains) == 0 {
		return nil, nil, append(errs, inFile("lists no chains (a chains: list with at least one chain is required)"))
	}
	used = map[string]bool{}
	chains = make([]Chain, len(doc.Chains))
	for i, fc := range doc.Chains {
		chains[i] = fc.chain(fileNamer(i, strings.TrimSpace(fc.Name)), getenv, used, &errs)
	}
	return chains, used, errs
}

// chain applies the defaults and reads the variables fc names.
func (fc fileChain) chain(n chainNamer, getenv func(string) string, used map[string]bool, errs *[]error) Chain {
	ch := Chain{
		Name:                 strings.TrimSpace(fc.Name),
		ChainID:              fc.ChainID,
		Confirmations:        deref(fc.Confirmations, DefaultConfirmations),
		MaxFeePerGasWei:      gweiToWei(deref(fc.Fees.MaxFeeGwei, DefaultMaxFeeGwei)),
		BumpPercent:          deref(fc.Fees.BumpPercent, DefaultBumpPercent),
		StuckBlocks:          deref(fc.Fees.StuckAfterBlocks, DefaultStuckBlocks),
		BlockTime:            fc.BlockTime,
		PollInterval:         derivePollInterval(fc.BlockTime),
		KeystorePasswordFile: strings.TrimSpace(fc.Signers.KeystorePasswordFile),
		SignerMaxInFlight:    int(min(deref(fc.Signers.MaxInFlight, DefaultSignerMaxInFlight), 1_000_000)),
		Namespaced:           true,
	}
	if fc.PollInterval != nil {
		ch.PollInterval = *fc.PollInterval
	}
	for _, u := range fc.RPCURLs {
		ch.RPCURLs = append(ch.RPCURLs, strings.TrimSpace(u))
	}
	for _, f := range fc.Signers.KeystoreFiles {
		ch.KeystoreFiles = append(ch.KeystoreFiles, strings.TrimSpace(f))
	}
	for _, id := range fc.Signers.KMSKeyIDs {
		ch.KMSKeyIDs = append(ch.KMSKeyIDs, strings.TrimSpace(id))
	}
	ch.PrivateKeysEnv = strings.TrimSpace(fc.Signers.PrivateKeysEnv)
	if v, ok := namedVar(fc.Signers.PrivateKeysEnv, setPrivateKeys, n, getenv, used, errs); ok {
		ch.PrivateKeys = list(v)
		if len(ch.PrivateKeys) == 0 {
			*errs = append(*errs, fmt.Errorf("%s: %s holds no keys", n.name(setPrivateKeys), varName(fc.Signers.PrivateKeysEnv)))
		}
	}
	if v, ok := namedVar(fc.Signers.KeystorePasswordEnv, setKeystorePassword, n, getenv, used, errs); ok {
		ch.KeystorePassword = v
	}
	return ch
}

// namedVar reads the environment variable that setting s names (name),
// if it names one; an unset or empty one is an error. Since a key or a
// password written in the file by mistake would land here, a name is
// echoed only when it looks like a variable's name.
func namedVar(name string, s chainSetting, n chainNamer, getenv func(string) string, used map[string]bool, errs *[]error) (string, bool) {
	if name = strings.TrimSpace(name); name == "" {
		return "", false
	}
	if !envNameRE.MatchString(name) {
		*errs = append(*errs, fmt.Errorf("%s: is not the name of an environment variable (keys and passwords never go in the file: name the variable that holds them)", n.name(s)))
		return "", false
	}
	used[name] = true
	v := getenv(name)
	if v == "" {
		*errs = append(*errs, fmt.Errorf("%s: %s is not set or empty", n.name(s), varName(name)))
		return "", false
	}
	return v, true
}

var (
	envNameRE      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	plainEnvNameRE = regexp.MustCompile(`^[A-Z_][A-Z0-9_]{0,63}$`)
	chainNameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
	digitsRE       = regexp.MustCompile(`^[0-9]+$`)
	yamlLineRE     = regexp.MustCompile(`^line ([0-9]+):`)
	yamlTypes      = strings.NewReplacer("in type config.fileDoc", "at the top level", "[]config.fileChain", "a list of chains", "type config.fileChain", "a chain", "config.fileChain", "a chain", "type config.fileFees", "fees", "config.fileFees", "fees", "type config.fileSigners", "signers", "config.fileSigners", "signers")
)

const chainIDExplains = "requests pick a chain by name or by decimal chain id"

// varName is how a message shows the name of a variable the file names:
// as written when it has the usual form (SEPOLIA_KEYS), else not at all.
func varName(name string) string {
	if plainEnvNameRE.MatchString(name) {
		return name
	}
	return "the variable it names"
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// derivePollInterval is a file chain's poll interval when it sets none:
// half its block time within 100ms..5s, or DefaultPollInterval without one.
func derivePollInterval(blockTime time.Duration) time.Duration {
	if blockTime <= 0 {
		return DefaultPollInterval
	}
	return min(max(blockTime/2, MinDerivedPollInterval), MaxDerivedPollInterval)
}

// chainLines maps the lines of relayq.yaml to its chains: starts[i] is the
// first line of chains[i], end the first line past the list (0: none).
type chainLineMap struct {
	starts []int
	end    int
}

func chainLines(root *yaml.Node) chainLineMap {
	var m chainLineMap
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return m
	}
	top := root.Content[0].Content
	for k := 0; k+1 < len(top); k += 2 {
		if top[k].Value != "chains" || top[k+1].Kind != yaml.SequenceNode {
			continue
		}
		for _, item := range top[k+1].Content {
			m.starts = append(m.starts, item.Line)
		}
		for j := k + 2; j < len(top); j += 2 {
			if top[j].Line > top[k].Line && (m.end == 0 || top[j].Line < m.end) {
				m.end = top[j].Line
			}
		}
		break
	}
	return m
}

// chainAt is the index of the chain a decoder message ("line 12: ...")
// is about, or -1.
func (m chainLineMap) chainAt(msg string) int {
	sub := yamlLineRE.FindStringSubmatch(msg)
	if sub == nil {
		return -1
	}
	line, _ := strconv.Atoi(sub[1])
	if m.end != 0 && line >= m.end {
		return -1
	}
	at := -1
	for i, start := range m.starts {
		if start <= line {
			at = i
		}
	}
	return at
}

// chainLabel names chains[i] in messages: "chains[1] (sepolia)".
func chainLabel(i int, name string) string {
	switch name = strings.TrimSpace(name); {
	case name == "":
		return fmt.Sprintf("chains[%d]", i)
	case !chainNameRE.MatchString(name):
		return fmt.Sprintf("chains[%d] (%q)", i, name) // a bad name, quoted
	}
	return fmt.Sprintf("chains[%d] (%s)", i, name)
}

// envConflicts reports each chain-level variable set together with
// RELAYQ_CONFIG, but for one a file chain names (private_keys_env:
// RELAYQ_PRIVATE_KEYS is fine).
func envConflicts(getenv func(string) string, path string, used map[string]bool) []error {
	var errs []error
	for _, s := range chainSettings {
		if used[s.env] || strings.TrimSpace(getenv(s.env)) == "" {
			continue
		}
		where := "as " + s.key
		switch s {
		case setPrivateKeys:
			where = "name the variable holding the keys in signers.private_keys_env"
		case setKeystorePassword:
			where = "name the variable holding it in signers.keystore_password_env"
		}
		errs = append(errs, fmt.Errorf("%s: is set, but chains come from %s (%s); set it there (%s)", s.env, ConfigFileVar, path, where))
	}
	return errs
}

// checkChains checks every chain; file chains also for what they must not
// share: names, chain ids and RPC endpoints.
func checkChains(chains []Chain, file string, role Role, bad func(name, format string, args ...any)) {
	if len(chains) == 0 {
		bad(ConfigFileVar, "%s gives no chains to serve", file)
		return
	}
	names := map[string]int{}
	ids := map[uint64]int{}
	rpcs := map[string]int{}
	for i, ch := range chains {
		if !ch.Namespaced {
			checkChain(ch, role, envNamer(), bad)
			continue
		}
		n := fileNamer(i, ch.Name)
		switch {
		case ch.Name == "":
			bad(n.at+"name", "is required (%s)", chainIDExplains)
		case !chainNameRE.MatchString(ch.Name):
			bad(n.at+"name", "%q is not 1 to 32 of a-z, 0-9, _ and -, starting with a letter or digit", ch.Name)
		case digitsRE.MatchString(ch.Name) && ch.Name != strconv.FormatUint(ch.ChainID, 10):
			bad(n.at+"name", "%q is a number but not this chain's chain_id (%s)", ch.Name, chainIDExplains)
		}
		if j, ok := names[ch.Name]; ok && ch.Name != "" {
			bad(n.at+"name", "%q is %s's name too; each chain needs its own", ch.Name, chainLabel(j, chains[j].Name))
		} else if ch.Name != "" {
			names[ch.Name] = i
		}
		if ch.ChainID == 0 {
			bad(n.at+"chain_id", "is required (above 0: the id the chain's nodes answer)")
		} else if j, ok := ids[ch.ChainID]; ok {
			bad(n.at+"chain_id", "%d is %s's too; each chain id may be listed once (its Redis keys and queues are named by it)", ch.ChainID, chainLabel(j, chains[j].Name))
		} else {
			ids[ch.ChainID] = i
		}
		if ch.BlockTime < 0 {
			bad(n.at+"block_time", "%s is negative", ch.BlockTime)
		}
		for _, raw := range ch.RPCURLs {
			if !isRPCURL(raw) {
				continue // checkChain reports it
			}
			k := rpcKey(raw)
			if j, ok := rpcs[k]; ok && j != i {
				bad(n.name(setRPCURLs), "%q is %s's too; a node serves one chain", nodeurl.Redact(raw), chainLabel(j, chains[j].Name))
			} else if !ok {
				rpcs[k] = i
			}
		}
		checkChain(ch, role, n, bad)
	}
}
