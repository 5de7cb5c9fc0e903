package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/redis/go-redis/v9"
)

// anvilNode is a fresh anvil for one scenario.
type anvilNode struct {
	*child
	url    string
	client *ethclient.Client
}

func (o *Options) startAnvil(ctx context.Context, dir, name string) (*anvilNode, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	blockTime := strconv.Itoa(o.BlockTime)
	if o.blockTime > 0 {
		blockTime = strconv.FormatFloat(o.blockTime.Seconds(), 'f', -1, 64)
	}
	args := []string{"--port", strconv.Itoa(port), "--host", "127.0.0.1", "--block-time", blockTime, "--silent"}
	if o.BlockGasLimit > 0 {
		args = append(args, "--gas-limit", strconv.FormatUint(o.BlockGasLimit, 10))
	}
	c, err := start(dir, name, o.AnvilBin, os.Environ(), args...)
	if err != nil {
		return nil, err
	}
	n := &anvilNode{child: c, url: "http://127.0.0.1:" + strconv.Itoa(port)}
	err = c.waitReady(ctx, func() error {
		cl, err := ethclient.DialContext(ctx, n.url)
		if err != nil {
			return err
		}
		if _, err := cl.ChainID(ctx); err != nil {
			cl.Close()
			return err
		}
		n.client = cl
		return nil
	})
	if err != nil {
		c.stop()
		return nil, err
	}
	return n, nil
}

func (n *anvilNode) close() {
	if n == nil {
		return
	}
	if n.client != nil {
		n.client.Close()
	}
	n.stop()
}

// redisNode is a fresh redis-server for one scenario, with AOF on and
// appendfsync everysec: the production default relayq documents.
type redisNode struct {
	*child
	addr string
	rdb  *redis.Client
}

func (o *Options) startRedis(ctx context.Context, dir, name string) (*redisNode, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, name+"-data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	c, err := start(dir, name, o.RedisBin, os.Environ(), "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--dir", data, "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--logfile", "")
	if err != nil {
		return nil, err
	}
	n := &redisNode{child: c, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	n.rdb = redis.NewClient(&redis.Options{Addr: n.addr})
	if err := c.waitReady(ctx, func() error { return n.rdb.Ping(ctx).Err() }); err != nil {
		n.close()
		return nil, err
	}
	return n, nil
}

func (n *redisNode) url() string { return "redis://" + n.addr + "/0" }

// commands is the server's total_commands_processed.
func (n *redisNode) commands(ctx context.Context) (int64, error) {
	info, err := n.rdb.InfoMap(ctx, "stats").Result()
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(info["Stats"]["total_commands_processed"], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redis INFO stats: %w", err)
	}
	return v, nil
}

// commandStats is the server's calls per command (INFO commandstats),
// commands run by scripts included.
func (n *redisNode) commandStats(ctx context.Context) (map[string]int, error) {
	info, err := n.rdb.InfoMap(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for k, v := range info["Commandstats"] {
		calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
		c, err := strconv.Atoi(calls)
		if err != nil {
			return nil, fmt.Errorf("redis INFO commandstats %s: %q", k, v)
		}
		out[strings.TrimPrefix(k, "cmdstat_")] = c
	}
	return out, nil
}

func (n *redisNode) close() {
	if n == nil {
		return
	}
	_ = n.rdb.Close()
	n.stop()
}
