package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file starts the Redis deployments relayq supports besides one
// server: a primary with replicas watched by Sentinel, and a Redis Cluster.
// Every process is a private redis-server on free 127.0.0.1 ports with its
// own temporary directory, killed by t.Cleanup.

// modeTimeout bounds each wait for a replica link, a sentinel quorum or a
// cluster to form.
const modeTimeout = 30 * time.Second

// RedisReplica starts a redis-server replicating primary (--replicaof) and
// waits until the initial sync is done and a WAIT on the primary counts
// it. It takes the same options as Redis (WithoutAOF…).
func RedisReplica(t testing.TB, primary *RedisServer, opts ...RedisOption) *RedisServer {
	SkipShort(t, "starts Redis replicas")
	t.Helper()
	// A primary waits 5 s by default before a diskless full sync, for more
	// replicas to join it; the replica, once promoted, would too.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pc := redis.NewClient(&redis.Options{Addr: primary.Addr()})
	err := pc.ConfigSet(ctx, "repl-diskless-sync-delay", "0").Err()
	pc.Close()
	if err != nil {
		t.Fatalf("testenv: configure the primary on port %d: %v", primary.Port(), err)
	}
	opts = append(opts, WithRedisArgs("--replicaof", "127.0.0.1", strconv.Itoa(primary.Port()), "--repl-diskless-sync-delay", "0"))
	r := Redis(t, opts...)
	if err := waitFor(modeTimeout, func(ctx context.Context) error {
		return online(ctx, r.Addr(), r.Port())
	}); err != nil {
		t.Fatalf("testenv: replica on port %d never synced with the primary on %d: %v", r.Port(), primary.Port(), err)
	}
	return r
}

// online succeeds when the server at addr is a replica whose link to its
// primary is up and the primary counts it as online: only then does a
// WAIT count it (after a full sync, the primary waits for the replica's
// first acknowledgement, which may take a second).
func online(ctx context.Context, replica string, port int) error {
	if err := linkUp(ctx, replica); err != nil {
		return err
	}
	info, err := redisInfo(ctx, replica, "replication")
	if err != nil {
		return err
	}
	primary := net.JoinHostPort(info["master_host"], info["master_port"])
	pinfo, err := redisInfo(ctx, primary, "replication")
	if err != nil {
		return err
	}
	listed := false
	for k, v := range pinfo {
		listed = listed || strings.HasPrefix(k, "slave") && strings.Contains(v, fmt.Sprintf("port=%d,", port)) && strings.Contains(v, "state=online")
	}
	if !listed {
		return fmt.Errorf("primary %s does not count the replica on port %d as online yet", primary, port)
	}
	// Even online, a replica that has not acknowledged anything yet may
	// leave the first WAIT unanswered: wait until one is answered. PUBLISH
	// is replicated but writes no key.
	c := redis.NewClient(&redis.Options{Addr: primary, MaxRetries: -1})
	defer c.Close()
	var n *redis.Cmd
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Publish(ctx, "testenv:replica-check", "1")
		n = p.Do(ctx, "WAIT", 1, 500)
		return nil
	}); err != nil {
		return err
	}
	if v, err := n.Int64(); err != nil || v < 1 {
		return fmt.Errorf("primary %s: no replica acknowledged a WAIT yet (%d, %v)", primary, v, err)
	}
	return nil
}

// RestartAsReplica starts a stopped (or killed) server again on its port
// and data directory as a replica of primary (host:port), and waits until
// it has synced. A failed primary brought back this way never serves, even
// briefly, as an empty primary that sentinels could promote.
func (s *RedisServer) RestartAsReplica(primary string) {
	s.t.Helper()
	host, port, err := net.SplitHostPort(primary)
	if err != nil {
		s.t.Fatalf("testenv: %v", err)
	}
	s.Stop()
	s.config.args = append(s.config.args, "--replicaof", host, port)
	s.setPort(s.port)
	if err := s.proc.start(); err != nil {
		s.t.Fatalf("testenv: restart redis-server as a replica: %v", err)
	}
	if err := s.proc.waitReady(s.ready); err != nil {
		s.t.Fatalf("testenv: restart redis-server as a replica on port %d: %v", s.port, err)
	}
	if err := s.WaitReplica(modeTimeout); err != nil {
		s.t.Fatalf("testenv: redis-server on port %d did not sync with %s: %v", s.port, primary, err)
	}
}

// WaitReplica waits (at most within) until the server is a replica whose
// link to its primary is up and synced, and which the primary counts as
// online (a WAIT counts it): for instance an old primary that came back and
// that the sentinels turned into a replica of the new one.
func (s *RedisServer) WaitReplica(within time.Duration) error {
	return waitFor(within, func(ctx context.Context) error { return online(ctx, s.Addr(), s.port) })
}

// linkUp succeeds when the server at addr is a replica whose link to its
// primary is up.
func linkUp(ctx context.Context, addr string) error {
	info, err := redisInfo(ctx, addr, "replication")
	if err != nil {
		return err
	}
	if info["role"] != "slave" || info["master_link_status"] != "up" || info["master_sync_in_progress"] != "0" {
		return fmt.Errorf("role %s, link %s, sync in progress %s", info["role"], info["master_link_status"], info["master_sync_in_progress"])
	}
	return nil
}

// Pause stops the server with SIGSTOP: it keeps its connections but
// answers nothing (a replica acknowledges nothing) until Resume.
func (s *RedisServer) Pause() { s.signal(syscall.SIGSTOP) }

// Resume lets a paused server run again (SIGCONT).
func (s *RedisServer) Resume() { s.signal(syscall.SIGCONT) }

func (s *RedisServer) signal(sig syscall.Signal) {
	s.proc.mu.Lock()
	cmd := s.proc.cmd
	s.proc.mu.Unlock()
	if cmd == nil || cmd.Process == nil || !s.Running() {
		s.t.Errorf("testenv: redis-server on port %d is not running", s.port)
		return
	}
	if err := cmd.Process.Signal(sig); err != nil {
		s.t.Errorf("testenv: signal redis-server: %v", err)
	}
}

// Sentinels is a set of Redis Sentinel processes watching one primary.
type Sentinels struct {
	t      testing.TB
	Master string // the name they monitor the primary under
	procs  []*process
	ports  []int
}

// SentinelOptions tune Sentinels; zero values take the defaults.
type SentinelOptions struct {
	Count      int           // sentinels to start (default 3)
	Quorum     int           // sentinels that must agree the primary is down (default Count/2+1)
	DownAfter  time.Duration // down-after-milliseconds (default 1s)
	Failover   time.Duration // failover-timeout (default 5s)
	MasterName string        // default "mymaster"
}

// StartSentinels starts sentinels (redis-server <conf> --sentinel: the same
// binary, so no redis-sentinel package is needed) monitoring primary, and
// waits until each one sees the primary, the other sentinels and the
// replicas expected (the primary's replicas must be connected already).
func StartSentinels(t testing.TB, primary *RedisServer, replicas int, o SentinelOptions) *Sentinels {
	SkipShort(t, "starts Redis Sentinels")
	t.Helper()
	bin, ok := findProgram("redis-server")
	if !ok {
		t.Fatalf("testenv: redis-server is not on PATH; %s", installHint)
	}
	if o.Count == 0 {
		o.Count = 3
	}
	if o.Quorum == 0 {
		o.Quorum = o.Count/2 + 1
	}
	if o.DownAfter == 0 {
		o.DownAfter = time.Second
	}
	if o.Failover == 0 {
		o.Failover = 5 * time.Second
	}
	if o.MasterName == "" {
		o.MasterName = "mymaster"
	}
	s := &Sentinels{t: t, Master: o.MasterName}
	for i := range o.Count {
		dir := t.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		p := &process{name: fmt.Sprintf("sentinel-%d", i), bin: bin, logPath: filepath.Join(dir, "sentinel.log")}
		t.Cleanup(func() {
			if err := p.kill(); err != nil {
				t.Errorf("testenv: %v", err)
			}
			p.logOnFailure(t)
		})
		port := FreePort(t)
		write := func() error {
			// Sentinel rewrites its file as it learns; it must be writable.
			body := strings.Join([]string{
				"port " + strconv.Itoa(port),
				"bind 127.0.0.1",
				"daemonize no",
				`logfile ""`,
				"dir " + dir,
				fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", o.MasterName, primary.Port(), o.Quorum),
				fmt.Sprintf("sentinel down-after-milliseconds %s %d", o.MasterName, o.DownAfter.Milliseconds()),
				fmt.Sprintf("sentinel failover-timeout %s %d", o.MasterName, o.Failover.Milliseconds()),
				fmt.Sprintf("sentinel parallel-syncs %s 1", o.MasterName),
				"",
			}, "\n")
			return os.WriteFile(conf, []byte(body), 0o644)
		}
		if err := write(); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		p.args = []string{conf, "--sentinel"}
		if err := p.startReady(func() error {
			if err := p.listening(port); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return pingAt(ctx, "127.0.0.1:"+strconv.Itoa(port))
		}, func() error {
			var err error
			if port, err = freePort(); err == nil {
				err = write()
			}
			return err
		}); err != nil {
			t.Fatalf("testenv: start sentinel: %v", err)
		}
		s.procs, s.ports = append(s.procs, p), append(s.ports, port)
	}
	// Hello messages go out every 2 s: wait until the sentinels know each
	// other and the replicas, or a failover could not be agreed.
	for _, addr := range s.Addrs() {
		if err := waitFor(modeTimeout, func(ctx context.Context) error {
			m, err := sentinelMaster(ctx, addr, o.MasterName)
			if err != nil {
				return err
			}
			if m["num-other-sentinels"] != strconv.Itoa(o.Count-1) || m["num-slaves"] != strconv.Itoa(replicas) {
				return fmt.Errorf("sentinel %s sees %s other sentinels and %s replicas", addr, m["num-other-sentinels"], m["num-slaves"])
			}
			return nil
		}); err != nil {
			t.Fatalf("testenv: sentinels did not form: %v", err)
		}
	}
	return s
}

// Addrs are the sentinels' host:port addresses.
func (s *Sentinels) Addrs() []string {
	out := make([]string, len(s.ports))
	for i, p := range s.ports {
		out[i] = "127.0.0.1:" + strconv.Itoa(p)
	}
	return out
}

// URL is relayq's REDIS_URL for this primary through these sentinels:
// redis-sentinel://127.0.0.1:p1,127.0.0.1:p2,…/<master>.
func (s *Sentinels) URL() string {
	return "redis-sentinel://" + strings.Join(s.Addrs(), ",") + "/" + s.Master
}

// PrimaryAddr asks the sentinels which server is the primary now.
func (s *Sentinels) PrimaryAddr(ctx context.Context) (string, error) {
	var last error
	for _, addr := range s.Addrs() {
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		v, err := c.Do(ctx, "SENTINEL", "get-master-addr-by-name", s.Master).StringSlice()
		c.Close()
		if err == nil && len(v) == 2 {
			return v[0] + ":" + v[1], nil
		}
		last = fmt.Errorf("sentinel %s: %v %v", addr, v, err)
	}
	return "", last
}

// WaitPrimary waits (bounded) until the sentinels name a primary other
// than old, and that server answers as a primary; it returns its address.
func (s *Sentinels) WaitPrimary(old string, within time.Duration) (string, error) {
	var now string
	err := waitFor(within, func(ctx context.Context) error {
		addr, err := s.PrimaryAddr(ctx)
		if err != nil {
			return err
		}
		if addr == old {
			return fmt.Errorf("the primary is still %s", addr)
		}
		info, err := redisInfo(ctx, addr, "replication")
		if err != nil {
			return err
		}
		if info["role"] != "master" {
			return fmt.Errorf("%s is %s, not yet a primary", addr, info["role"])
		}
		now = addr
		return nil
	})
	return now, err
}

// RedisCluster is a Redis Cluster, each node a private redis-server.
type RedisCluster struct {
	Nodes []*RedisServer // masters first, then their replicas
}

// StartRedisCluster starts masters×(1+replicas) redis-servers with cluster
// mode on (each with its own free cluster-bus port), joins them with
// `redis-cli --cluster create --cluster-replicas <replicas> --cluster-yes`
// (slots spread evenly over the masters) and waits until every node
// reports cluster_state:ok and every replica has synced. opts apply to
// every node (WithoutAOF…).
func StartRedisCluster(t testing.TB, masters, replicas int, opts ...RedisOption) *RedisCluster {
	SkipShort(t, "starts a Redis Cluster")
	t.Helper()
	cli, ok := findProgram("redis-cli")
	if !ok {
		t.Fatalf("testenv: redis-cli is not on PATH; %s", installHint)
	}
	c := &RedisCluster{}
	for range masters * (1 + replicas) {
		nodeOpts := append(append([]RedisOption{}, opts...), WithRedisArgs(
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", // in the node's data directory
			"--cluster-port", strconv.Itoa(FreePort(t)), // not port+10000, which may be taken
			"--cluster-node-timeout", "2000",
			"--repl-diskless-sync-delay", "0",
		))
		c.Nodes = append(c.Nodes, Redis(t, nodeOpts...))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), modeTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, addr := range c.Addrs() {
		if err := waitFor(modeTimeout, func(ctx context.Context) error {
			cl := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
			defer cl.Close()
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return fmt.Errorf("node %s: cluster not ok yet", addr)
			}
			repl, err := redisInfo(ctx, addr, "replication")
			if err != nil {
				return err
			}
			if repl["role"] == "slave" {
				_, port, _ := net.SplitHostPort(addr)
				n, _ := strconv.Atoi(port)
				return online(ctx, addr, n)
			}
			if repl["connected_slaves"] != strconv.Itoa(replicas) {
				return fmt.Errorf("master %s has %s replicas, not %d", addr, repl["connected_slaves"], replicas)
			}
			return nil
		}); err != nil {
			t.Fatalf("testenv: cluster did not form: %v", err)
		}
	}
	return c
}

// Addrs are the nodes' host:port addresses.
func (c *RedisCluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// URL is relayq's REDIS_URL for the cluster: redis-cluster://a,b,c.
func (c *RedisCluster) URL() string {
	return "redis-cluster://" + strings.Join(c.Addrs(), ",")
}

// waitFor polls check (each call gets a 2 s context) until it succeeds or
// within passes, and returns the last error then.
func waitFor(within time.Duration, check func(ctx context.Context) error) error {
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := check(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func pingAt(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	return c.Ping(ctx).Err()
}

// redisInfo reads one INFO section of the server at addr as key → value.
func redisInfo(ctx context.Context, addr, section string) (map[string]string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	s, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out, nil
}

// sentinelMaster is SENTINEL MASTER <name> as key → value.
func sentinelMaster(ctx context.Context, addr, name string) (map[string]string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	v, err := c.Do(ctx, "SENTINEL", "MASTER", name).Result()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	switch m := v.(type) {
	case []any:
		for i := 0; i+1 < len(m); i += 2 {
			out[fmt.Sprint(m[i])] = fmt.Sprint(m[i+1])
		}
	case map[any]any:
		for k, val := range m {
			out[fmt.Sprint(k)] = fmt.Sprint(val)
		}
	}
	return out, nil
}
