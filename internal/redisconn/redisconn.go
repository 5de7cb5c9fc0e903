// Package redisconn turns REDIS_URL into the two Redis handles relayq uses:
// a go-redis client for its own keys and Asynq's tasks, and an Asynq
// connection option for the monitor, which opens connections of its own.
// One URL names one of three deployments:
//
//	redis://[[user]:password@]host[:port][/db][?pool_size=…]     one server (also rediss://, unix://)
//	redis-sentinel://[[user]:password@]host:port[,host:port…]/<master>[?db=N&sentinel_password=…]
//	redis-cluster://[[user]:password@]host:port[,host:port…]
//
// rediss-sentinel:// and rediss-cluster:// are the same over TLS. The
// password in the user part is the data nodes' (primary, replicas, cluster
// nodes); sentinels that want one of their own get sentinel_password.
package redisconn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Mode is the kind of Redis deployment a URL names.
type Mode string

// Modes.
const (
	Standalone Mode = "standalone" // one server: redis://, rediss://, unix://
	Sentinel   Mode = "sentinel"   // a primary that Redis Sentinel fails over
	Cluster    Mode = "cluster"    // Redis Cluster
)

// Default ports when a URL leaves them out.
const (
	defaultPort         = "6379"
	defaultSentinelPort = "26379"
)

// defaultReadTimeout is go-redis's read timeout when the URL sets none.
const defaultReadTimeout = 3 * time.Second

// Conn is a parsed REDIS_URL.
type Conn struct {
	mode     Mode
	single   *redis.Options         // Standalone
	failover *redis.FailoverOptions // Sentinel
	cluster  *redis.ClusterOptions  // Cluster
	poolSet  bool                   // the URL says pool_size
}

// Parse reads a REDIS_URL. Its errors never repeat the URL (it may hold a
// password): the caller names the variable and, if it wants, Redact(raw).
func Parse(raw string) (*Conn, error) {
	raw = strings.TrimSpace(raw)
	scheme, _, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, errors.New("not a URL: it must start with redis://, rediss://, unix://, redis-sentinel:// or redis-cluster://")
	}
	switch scheme {
	case "redis", "rediss", "unix":
		o, err := redis.ParseURL(raw)
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			return nil, ue.Err // url.Error repeats the URL
		}
		if err != nil {
			return nil, err
		}
		u, _ := url.Parse(raw) // ParseURL parsed it already
		if strings.Contains(u.Host, ",") {
			return nil, errors.New("a redis:// URL names one server; for several use redis-sentinel:// or redis-cluster://")
		}
		return &Conn{mode: Standalone, single: o, poolSet: u.Query().Has("pool_size")}, nil
	case "redis-sentinel", "rediss-sentinel":
		return parseSentinel(raw, scheme == "rediss-sentinel")
	case "redis-cluster", "rediss-cluster":
		return parseCluster(raw, scheme == "rediss-cluster")
	default:
		return nil, fmt.Errorf("unknown scheme %q: use redis://, rediss://, unix://, redis-sentinel:// or redis-cluster://", scheme)
	}
}

// multiURL is the shape shared by the Sentinel and Cluster forms.
type multiURL struct {
	user, password string
	addrs          []string
	path           string // without the leading slash
	query          url.Values
}

// parseMulti splits scheme://[user[:password]@]host[:port][,host[:port]…][/path][?query].
// Go's url.Parse refuses several hosts, hence this.
func parseMulti(raw, port string) (multiURL, error) {
	var m multiURL
	_, rest, _ := strings.Cut(raw, "://")
	if strings.Contains(rest, "#") {
		return m, errors.New("a fragment (#…) is not allowed; percent-encode # in a password as %23")
	}
	rest, rawQuery, _ := strings.Cut(rest, "?")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return m, fmt.Errorf("query: %w", err)
	}
	m.query = q
	authority, path, _ := strings.Cut(rest, "/")
	m.path = path
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		userinfo := authority[:at]
		authority = authority[at+1:]
		user, pass, _ := strings.Cut(userinfo, ":")
		if m.user, err = url.PathUnescape(user); err != nil {
			return m, fmt.Errorf("user name: %w", err)
		}
		if m.password, err = url.PathUnescape(pass); err != nil {
			return m, errors.New("password: bad percent-encoding")
		}
	}
	if authority == "" {
		return m, errors.New("no host: name at least one as host:port")
	}
	for _, hp := range strings.Split(authority, ",") {
		addr, err := hostPort(hp, port)
		if err != nil {
			return m, err
		}
		m.addrs = append(m.addrs, addr)
	}
	return m, nil
}

// hostPort checks one host[:port], adding port when it has none.
func hostPort(hp, port string) (string, error) {
	if hp == "" {
		return "", errors.New("empty host in the host list (two commas, or a trailing one?)")
	}
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		if !strings.Contains(err.Error(), "missing port") {
			return "", fmt.Errorf("host %q: %v", hp, err)
		}
		h, p = strings.Trim(hp, "[]"), port
	}
	if h == "" {
		return "", fmt.Errorf("host %q has no host name", hp)
	}
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("host %q: port %q is not a number from 1 to 65535", hp, p)
	}
	return net.JoinHostPort(h, p), nil
}

// params reads the query parameters a form allows; any other is an error.
type params struct {
	q    url.Values
	errs []error
}

func (p *params) check(allowed ...string) {
	var unknown []string
	for k := range p.q {
		known := false
		for _, a := range allowed {
			known = known || k == a
		}
		if !known {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		p.errs = append(p.errs, fmt.Errorf("unknown parameter %s (this form takes %s)", strings.Join(unknown, ", "), strings.Join(allowed, ", ")))
	}
}

func (p *params) int(name string, min, max int) int {
	v := p.q.Get(name)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		p.errs = append(p.errs, fmt.Errorf("%s=%q is not a number from %d to %d", name, v, min, max))
	}
	return n
}

// duration takes a Go duration ("500ms") or whole seconds ("3"), like go-redis.
func (p *params) duration(name string) time.Duration {
	v := p.q.Get(name)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		p.errs = append(p.errs, fmt.Errorf("%s=%q is not a positive duration such as 500ms or 3s", name, v))
	}
	return d
}

// Parameters both multi-host forms take.
var commonParams = []string{"pool_size", "dial_timeout", "read_timeout", "write_timeout"}

func parseSentinel(raw string, useTLS bool) (*Conn, error) {
	m, err := parseMulti(raw, defaultSentinelPort)
	if err != nil {
		return nil, err
	}
	master, err := url.PathUnescape(strings.TrimSuffix(m.path, "/"))
	if err != nil || master == "" || strings.Contains(master, "/") {
		return nil, errors.New("no master name: put it in the path, as in redis-sentinel://host:26379,host:26380/mymaster")
	}
	p := params{q: m.query}
	p.check(append([]string{"db", "sentinel_username", "sentinel_password"}, commonParams...)...)
	o := &redis.FailoverOptions{
		MasterName:       master,
		SentinelAddrs:    m.addrs,
		SentinelUsername: m.query.Get("sentinel_username"),
		SentinelPassword: m.query.Get("sentinel_password"),
		Username:         m.user,
		Password:         m.password,
		DB:               p.int("db", 0, 10000),
		PoolSize:         p.int("pool_size", 1, 100000),
		DialTimeout:      p.duration("dial_timeout"),
		ReadTimeout:      p.duration("read_timeout"),
		WriteTimeout:     p.duration("write_timeout"),
	}
	if useTLS {
		// No ServerName: each connection checks the name it dialled.
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if err := errors.Join(p.errs...); err != nil {
		return nil, err
	}
	return &Conn{mode: Sentinel, failover: o, poolSet: m.query.Has("pool_size")}, nil
}

func parseCluster(raw string, useTLS bool) (*Conn, error) {
	m, err := parseMulti(raw, defaultPort)
	if err != nil {
		return nil, err
	}
	if m.path != "" && m.path != "0" {
		return nil, fmt.Errorf("path %q: Redis Cluster has only database 0; leave the path out", "/"+m.path)
	}
	p := params{q: m.query}
	p.check(commonParams...)
	o := &redis.ClusterOptions{
		Addrs:        m.addrs,
		Username:     m.user,
		Password:     m.password,
		PoolSize:     p.int("pool_size", 1, 100000),
		DialTimeout:  p.duration("dial_timeout"),
		ReadTimeout:  p.duration("read_timeout"),
		WriteTimeout: p.duration("write_timeout"),
	}
	if useTLS {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if err := errors.Join(p.errs...); err != nil {
		return nil, err
	}
	return &Conn{mode: Cluster, cluster: o, poolSet: m.query.Has("pool_size")}, nil
}

// Mode is the deployment the URL names.
func (c *Conn) Mode() Mode { return c.mode }

// Addrs are the addresses the URL names: the server, the sentinels or the
// cluster's seed nodes.
func (c *Conn) Addrs() []string {
	switch c.mode {
	case Sentinel:
		return append([]string(nil), c.failover.SentinelAddrs...)
	case Cluster:
		return append([]string(nil), c.cluster.Addrs...)
	default:
		return []string{c.single.Addr}
	}
}

// ReadTimeout is the clients' socket read timeout: a WAIT must answer
// well within it.
func (c *Conn) ReadTimeout() time.Duration {
	var d time.Duration
	switch c.mode {
	case Sentinel:
		d = c.failover.ReadTimeout
	case Cluster:
		d = c.cluster.ReadTimeout
	default:
		d = c.single.ReadTimeout
	}
	if d == 0 {
		return defaultReadTimeout
	}
	return d
}

// Client opens the go-redis client: a *redis.Client for one server or a
// Sentinel-managed primary (writes always go to the current primary), a
// *redis.ClusterClient for a cluster. Unless the URL sets pool_size, each
// pool holds at least minPool connections (per node on a cluster).
func (c *Conn) Client(minPool int) redis.UniversalClient {
	switch c.mode {
	case Sentinel:
		o := *c.failover
		if !c.poolSet {
			o.PoolSize = max(o.PoolSize, minPool)
		}
		return redis.NewFailoverClient(&o)
	case Cluster:
		o := *c.cluster
		if !c.poolSet {
			o.PoolSize = max(o.PoolSize, minPool)
		}
		return redis.NewClusterClient(&o)
	default:
		o := *c.single
		if !c.poolSet {
			o.PoolSize = max(o.PoolSize, minPool)
		}
		return redis.NewClient(&o)
	}
}

// AsynqOpt is the same connection as Asynq's option, for the monitor.
func (c *Conn) AsynqOpt() asynq.RedisConnOpt {
	switch c.mode {
	case Sentinel:
		o := c.failover
		return asynq.RedisFailoverClientOpt{
			MasterName: o.MasterName, SentinelAddrs: o.SentinelAddrs,
			SentinelUsername: o.SentinelUsername, SentinelPassword: o.SentinelPassword,
			Username: o.Username, Password: o.Password, DB: o.DB,
			DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
			PoolSize: o.PoolSize, TLSConfig: o.TLSConfig,
		}
	case Cluster:
		o := c.cluster
		return asynq.RedisClusterClientOpt{
			Addrs: o.Addrs, Username: o.Username, Password: o.Password,
			DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
			TLSConfig: o.TLSConfig,
		}
	default:
		o := c.single
		return asynq.RedisClientOpt{
			Network: o.Network, Addr: o.Addr, Username: o.Username, Password: o.Password, DB: o.DB,
			DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
			PoolSize: o.PoolSize, TLSConfig: o.TLSConfig,
		}
	}
}

// KeyPrefix is the prefix relayq's keys really get (RELAYQ_REDIS_PREFIX
// has no braces). On a cluster every key of a deployment carries one hash
// tag, the prefix in braces ("relayq:" becomes "{relayq}:"), so that every
// script and MULTI stays in one slot. Elsewhere the prefix is used as given.
func (c *Conn) KeyPrefix(prefix string) string {
	if c.mode != Cluster || strings.Contains(prefix, "{") {
		return prefix
	}
	return "{" + strings.TrimSuffix(prefix, ":") + "}:"
}

// Redact hides the passwords in a Redis URL (the user part and
// sentinel_password), for messages and logs.
func Redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	rest, query, hasQuery := strings.Cut(rest, "?")
	authEnd := strings.Index(rest, "/")
	if authEnd < 0 {
		authEnd = len(rest)
	}
	if at := strings.LastIndex(rest[:authEnd], "@"); at >= 0 {
		user, _, hasPass := strings.Cut(rest[:at], ":")
		if hasPass {
			user += ":***"
		}
		rest = user + rest[at:]
	}
	out := scheme + "://" + rest
	if !hasQuery {
		return out
	}
	parts := strings.Split(query, "&")
	for i, kv := range parts {
		if k, _, ok := strings.Cut(kv, "="); ok && strings.Contains(strings.ToLower(k), "password") {
			parts[i] = k + "=***"
		}
	}
	return out + "?" + strings.Join(parts, "&")
}
