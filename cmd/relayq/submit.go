package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/relayq/relayq/internal/devchain/contract"
)

const submitUsage = `Usage: relayq submit --to ADDRESS [--function SIG --args JSON | --data HEX] [flags]
       relayq submit --deploy [--data HEX | --bytecode HEX [--abi JSON --args JSON] | --sample NAME] [flags]

Submits a job to a running relayq API (POST /v1/jobs) and prints its id.
The API validates the call; its error names the field at fault. With
--wait it then follows the job like "relayq status ID --wait" (same exit
codes: 0 confirmed, 3 failed, 4 cancelled, 5 timeout, 1 other errors).

  relayq submit --to 0x5FbDB2315678afecb367f032d93F642f64180aa3 --function 'increment()' --wait
  relayq submit --to 0x… --function 'transfer(address,uint256)' --args '["0x…", "1000"]'
  relayq submit --deploy --sample counter --wait
  relayq submit --deploy --bytecode @Token.bin --abi @Token.abi.json --args '["My token", "MTK"]'

--deploy deploys a contract (a job without "to"); the job shows its
"contract_address". --data, --bytecode and --abi take @FILE to read the
value from a file (a .bin file's hex may lack its 0x). --sample deploys one
of relayq dev's sample contracts: counter (no constructor arguments) or
tally (--args '["<start>", "<label>"]').

Flags:
`

// submitRequest is the body of POST /v1/jobs; a flag not given is left out,
// so the API's defaults apply. Numbers go as decimal strings, which the API
// accepts, so it is the API that says what is out of range.
type submitRequest struct {
	To            *string         `json:"to,omitempty"`
	Function      *string         `json:"function,omitempty"`
	Args          json.RawMessage `json:"args,omitempty"`
	Data          *string         `json:"data,omitempty"`
	Value         *string         `json:"value,omitempty"`
	GasLimit      *string         `json:"gas_limit,omitempty"`
	From          *string         `json:"from,omitempty"`
	Confirmations *string         `json:"confirmations,omitempty"`
	Metadata      json.RawMessage `json:"metadata,omitempty"`
	WebhookURL    *string         `json:"webhook_url,omitempty"`
	Chain         *string         `json:"chain,omitempty"`
	Bytecode      *string         `json:"bytecode,omitempty"`
	ABI           json.RawMessage `json:"abi,omitempty"`
}

// runSubmit is `relayq submit`.
func runSubmit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("relayq submit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, submitUsage); fs.PrintDefaults() }
	cf := addClientFlags(fs, getenv)
	wf := addWaitFlags(fs)
	fields := map[string]*string{}
	field := func(name, usage string) { fields[name] = fs.String(name, "", usage) }
	field("to", "address of the contract (or account) to call (required, unless --deploy)")
	field("function", `function signature, e.g. "transfer(address,uint256)"`)
	field("args", `the function's arguments as a JSON array, e.g. '["0x…", "1000"]'`)
	field("data", "raw calldata as 0x hex, instead of --function; with --deploy, the whole initcode (@FILE reads it from a file)")
	field("bytecode", "with --deploy: the contract's creation bytecode, as 0x hex or @FILE")
	field("abi", "with --deploy: the contract's JSON ABI, to encode --args for its constructor (JSON or @FILE)")
	field("sample", "with --deploy: a sample contract of relayq dev, counter or tally")
	field("value", "wei to send along (decimal)")
	field("from", "the signer to use (one of the API's signers)")
	field("gas-limit", "gas limit; skips the estimate")
	field("confirmations", "blocks on top before the job is confirmed")
	field("metadata", "a JSON object stored with the job and returned as given")
	field("webhook-url", "URL that gets the job's status changes")
	field("chain", "the chain's name or id, when the API serves several (RELAYQ_CONFIG)")
	deploy := fs.Bool("deploy", false, "deploy a contract: no --to; give --data, --bytecode (with --abi and --args) or --sample")
	idem := fs.String("idempotency-key", "", "Idempotency-Key: the same key and request again returns the first job instead of a new one")
	wait := fs.Bool("wait", false, `then follow the job like "relayq status ID --wait"`)
	asJSON := fs.Bool("json", false, "print the API's JSON answer instead of the id")
	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fs.Usage()
		return withCode(exitUsage, fmt.Errorf("submit takes no arguments, only flags (got %q)", pos[0]))
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	if err := wf.check(); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	opt := func(name string) *string {
		if !set[name] {
			return nil
		}
		return fields[name]
	}
	req := submitRequest{
		To: opt("to"), Function: opt("function"), Data: opt("data"), Value: opt("value"),
		GasLimit: opt("gas-limit"), From: opt("from"), Confirmations: opt("confirmations"),
		WebhookURL: opt("webhook-url"), Chain: opt("chain"),
	}
	if err := deployFields(&req, *deploy, opt); err != nil {
		return withCode(exitUsage, err)
	}
	// JSON flags must be JSON for the body to be built at all; what they
	// hold is the API's to judge.
	for _, j := range []struct {
		name string
		dst  *json.RawMessage
		eg   string
	}{{"args", &req.Args, `'["0x…", "1000"]'`}, {"metadata", &req.Metadata, `'{"order": 42}'`}, {"abi", &req.ABI, `@Token.abi.json`}} {
		if v := opt(j.name); v != nil {
			if !json.Valid([]byte(*v)) {
				return withCode(exitUsage, fmt.Errorf("--%s is not valid JSON: give it like %s", j.name, j.eg))
			}
			*j.dst = json.RawMessage(*v)
		}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	header := http.Header{}
	if *idem != "" {
		header.Set("Idempotency-Key", *idem)
	}
	code, raw, err := c.do(ctx, http.MethodPost, "/v1/jobs", body, header)
	if err != nil {
		return err
	}
	var j jobView
	if err := json.Unmarshal(raw, &j); err != nil || j.ID == "" {
		return fmt.Errorf("the API's answer is not a job: %s", clipText(string(raw), 200))
	}
	if *asJSON && !*wait {
		return printJSON(stdout, raw)
	}
	if !*asJSON {
		fmt.Fprintln(stdout, j.ID)
	}
	note := "accepted"
	if code == http.StatusOK {
		note = "already accepted with this Idempotency-Key"
	}
	if !*wait {
		fmt.Fprintf(stderr, "%s (%s); follow it with: relayq status %s --wait\n", note, j.Status, j.ID)
		return nil
	}
	if code == http.StatusOK {
		fmt.Fprintf(stderr, "%s: following the existing job\n", note)
	}
	return follow(ctx, c, j.ID, wf, *asJSON, stdout, stderr)
}

// deployFields fills a deployment's fields of req from --deploy,
// --bytecode, --abi, --sample and @FILE values of --data, --bytecode and
// --abi. Only what cannot be sent at all is refused here; what the fields
// hold is the API's to judge.
func deployFields(req *submitRequest, deploy bool, opt func(string) *string) error {
	if !deploy {
		for _, f := range []string{"bytecode", "abi", "sample"} {
			if opt(f) != nil {
				return fmt.Errorf("--%s is for deployments: add --deploy", f)
			}
		}
		return nil
	}
	if req.To != nil {
		return errors.New("--deploy creates a contract, which has no --to: leave --to out")
	}
	req.Bytecode = opt("bytecode")
	if name := opt("sample"); name != nil {
		if opt("data") != nil || opt("bytecode") != nil || opt("abi") != nil {
			return errors.New("--sample gives the bytecode (and ABI): leave out --data, --bytecode and --abi")
		}
		switch *name {
		case "counter":
			code := hexutil.Encode(contract.Bytecode)
			req.Bytecode = &code
		case "tally":
			code := hexutil.Encode(contract.TallyBytecode)
			req.Bytecode, req.ABI = &code, json.RawMessage(contract.TallyABIJSON)
		default:
			return fmt.Errorf("--sample %q: the samples are counter and tally", *name)
		}
		return nil
	}
	for _, f := range []struct {
		name string
		dst  **string
	}{{"data", &req.Data}, {"bytecode", &req.Bytecode}} {
		v := opt(f.name)
		if v == nil || !strings.HasPrefix(*v, "@") {
			continue
		}
		b, err := os.ReadFile((*v)[1:])
		if err != nil {
			return fmt.Errorf("--%s: %w", f.name, err)
		}
		hex := strings.TrimSpace(string(b))
		if !strings.HasPrefix(hex, "0x") && !strings.HasPrefix(hex, "0X") {
			hex = "0x" + hex // solc writes .bin files without it
		}
		*f.dst = &hex
	}
	if v := opt("abi"); v != nil && strings.HasPrefix(*v, "@") {
		b, err := os.ReadFile((*v)[1:])
		if err != nil {
			return fmt.Errorf("--abi: %w", err)
		}
		s := string(b)
		*v = s // checked as JSON with the other JSON flags
	}
	if req.Data == nil && req.Bytecode == nil {
		return errors.New("--deploy needs the contract: --data (the initcode), --bytecode (with --abi and --args) or --sample")
	}
	return nil
}
