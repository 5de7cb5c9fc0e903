package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/tasks"
)

// DefaultChainName names the one chain of a deployment configured by the
// environment (config.DefaultChainName).
const DefaultChainName = "default"

// Chain is one chain the API serves: its jobs, queues and registries live
// under its own key prefix and queues, and its reads go to its node.
type Chain struct {
	Name          string       // how requests name it ("chain"), besides its decimal chain id
	Prefix        string       // Redis key prefix of its jobs, nonces and contracts
	Queues        tasks.Queues // its Asynq queues (zero: tasks.DefaultQueues)
	Node          Node
	Signers       []common.Address // signers whose keys this process holds for it
	Confirmations uint64           // default confirmations of its jobs (0: 1)
	// ChainID, when set, is the chain's id as configured (relayq.yaml), and
	// New does not ask the node: a chain whose node is down at start is
	// still served (its jobs wait). 0: read from Node.
	ChainID uint64
}

// chainSet is every chain of one API. Each chain is served by a Server of
// its own sharing the Echo instance, the monitor and the Redis client; the
// first one is the API's Server.
type chainSet struct {
	list []*Server
}

// names lists the chains for messages: "sepolia (11155111), base (8453)".
func (cs *chainSet) names() string {
	out := make([]string, len(cs.list))
	for i, ch := range cs.list {
		out[i] = fmt.Sprintf("%s (%d)", ch.name, ch.chainID)
	}
	return strings.Join(out, ", ")
}

// chainFor resolves a chain selector: a chain's name or its decimal chain
// id. An empty selector is the API's only chain; with several the request
// must name one.
func (s *Server) chainFor(sel string) (*Server, *Error) {
	all := s.chains.list
	if sel == "" {
		if len(all) == 1 {
			return all[0], nil
		}
		return nil, invalid("chain_required", "chain", "this relayq serves several chains: name one with chain, one of %s", s.chains.names())
	}
	for _, ch := range all {
		if sel == ch.name || sel == strconv.FormatUint(ch.chainID, 10) {
			return ch, nil
		}
	}
	return nil, invalid("unknown_chain", "chain", "chain %q is not one this relayq serves: %s", clip(sel), s.chains.names())
}

// checkChain refuses a request body whose chain does not name s, the chain
// serving it (the routing below chose s from the same field).
func (s *Server) checkChain(sel *string) *Error {
	if sel == nil {
		return nil
	}
	ch, e := s.chainFor(*sel)
	if e != nil {
		return e
	}
	if ch != s {
		return invalid("unknown_chain", "chain", "chain %q is not the chain of this request", clip(*sel))
	}
	return nil
}

// chainRoute picks the Server of a request's chain.
type chainRoute func(s *Server, c echo.Context) (*Server, error)

// onChain routes a handler to the Server of the request's chain.
func (s *Server) onChain(route chainRoute, h func(*Server, echo.Context) error) echo.HandlerFunc {
	return func(c echo.Context) error {
		ch, err := route(s, c)
		if err != nil {
			return err
		}
		return h(ch, c)
	}
}

// counted routes a job request (POST /v1/jobs, /v1/jobs/batch) as route
// does and counts one it refuses in the metrics, as the handler counts what
// it refuses: with several chains byBody reads and checks the body first.
func counted(route chainRoute) chainRoute {
	return func(s *Server, c echo.Context) (*Server, error) {
		ch, err := route(s, c)
		if err != nil {
			s.countJobRequest(c, err)
		}
		return ch, err
	}
}

// queryChain is the request's ?chain=, which may be given once.
func queryChain(c echo.Context) (string, *Error) {
	if vs := c.QueryParams()["chain"]; len(vs) > 1 {
		return "", invalid("conflicting_fields", "chain", "chain is given %d times in the query; give it once", len(vs))
	}
	return c.QueryParam("chain"), nil
}

// byQuery takes the chain from ?chain=.
func byQuery(s *Server, c echo.Context) (*Server, error) {
	sel, e := queryChain(c)
	if e != nil {
		return nil, e
	}
	ch, e := s.chainFor(sel)
	if e != nil {
		return nil, e
	}
	return ch, nil
}

// byBody takes the chain from the body's top-level "chain" field, reading
// the body and handing it on unchanged. A body that is not a JSON object
// goes to the first chain, whose handler reports what is wrong with it.
func byBody(s *Server, c echo.Context) (*Server, error) {
	if _, ok := c.QueryParams()["chain"]; ok {
		// Two places for one choice could disagree: refuse the query.
		return nil, invalid("unknown_parameter", "chain", `on this route the chain goes in the JSON body ("chain": "<name>"), not in the query`)
	}
	if len(s.chains.list) == 1 {
		return s, nil // the handler checks a chain field (checkChain)
	}
	body, e := readBody(c)
	if e != nil {
		return nil, e
	}
	c.Request().Body = io.NopCloser(bytes.NewReader(body))
	var sel struct {
		Chain json.RawMessage `json:"chain"`
	}
	if json.Unmarshal(body, &sel) != nil {
		return s, nil
	}
	name := ""
	if len(sel.Chain) > 0 && string(sel.Chain) != "null" {
		if err := json.Unmarshal(sel.Chain, &name); err != nil {
			return nil, invalid("invalid_type", "chain", "chain must be a JSON string: a chain's name or its decimal chain id")
		}
	}
	ch, e := s.chainFor(name)
	if e != nil {
		return nil, e
	}
	return ch, nil
}

// byJob takes the chain whose store holds the job named by :id; a job in
// none goes to the first chain, which answers 404.
func byJob(s *Server, c echo.Context) (*Server, error) {
	id := c.Param("id")
	if _, ok := jobs.CreatedAt(id); !ok || len(s.chains.list) == 1 {
		return s, nil
	}
	ctx := c.Request().Context()
	pipe := s.cfg.Redis.Pipeline()
	for _, ch := range s.chains.list {
		pipe.Exists(ctx, ch.store.JobKey(id))
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		return nil, apiError(CodeUnavailable, "could not look the job up: %v", err)
	}
	for i, cmd := range cmds {
		if n, ok := cmd.(*redis.IntCmd); ok && n.Val() > 0 {
			return s.chains.list[i], nil
		}
	}
	return s, nil
}

// listAllSigners answers GET /v1/signers: the signers of the chain ?chain=
// names, or of every chain.
//
// Listing every chain, one whose node or keys cannot be read is named in
// "unavailable" with its error instead of failing the whole answer: one
// chain's outage does not hide the others' signers.
func (s *Server) listAllSigners(c echo.Context) error {
	sel, e := queryChain(c)
	if e != nil {
		return e
	}
	if sel != "" || len(s.chains.list) == 1 {
		ch, e := s.chainFor(sel)
		if e != nil {
			return e
		}
		vs, err := ch.signerViews(c.Request().Context())
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]any{"signers": vs})
	}
	out := []signerView{}
	unavailable := map[string]string{}
	for _, ch := range s.chains.list {
		vs, err := ch.signerViews(c.Request().Context())
		if err != nil {
			unavailable[ch.name] = err.Error()
			continue
		}
		out = append(out, vs...)
	}
	if len(unavailable) == len(s.chains.list) {
		return apiError(CodeUnavailable, "could not read the signers of any chain: %v", unavailable)
	}
	body := map[string]any{"signers": out}
	if len(unavailable) > 0 {
		body["unavailable"] = unavailable
	}
	return c.JSON(http.StatusOK, body)
}
