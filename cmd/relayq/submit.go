package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
)

const submitUsage = `Usage: relayq submit --to ADDRESS [--function SIG --args JSON | --data HEX] [flags]

Submits a job to a running relayq API (POST /v1/jobs) and prints its id.
The API validates the call; its error names the field at fault. With
--wait it then follows the job like "relayq status ID --wait" (same exit
codes: 0 confirmed, 3 failed, 4 cancelled, 5 timeout, 1 other errors).

  relayq submit --to 0x5FbDB2315678afecb367f032d93F642f64180aa3 --function 'increment()' --wait
  relayq submit --to 0x… --function 'transfer(address,uint256)' --args '["0x…", "1000"]'

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
	field("to", "address of the contract (or account) to call (required)")
	field("function", `function signature, e.g. "transfer(address,uint256)"`)
	field("args", `the function's arguments as a JSON array, e.g. '["0x…", "1000"]'`)
	field("data", "raw calldata as 0x hex, instead of --function")
	field("value", "wei to send along (decimal)")
	field("from", "the signer to use (one of the API's signers)")
	field("gas-limit", "gas limit; skips the estimate")
	field("confirmations", "blocks on top before the job is confirmed")
	field("metadata", "a JSON object stored with the job and returned as given")
	field("webhook-url", "URL that gets the job's status changes")
	field("chain", "the chain's name or id, when the API serves several (RELAYQ_CONFIG)")
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
	// JSON flags must be JSON for the body to be built at all; what they
	// hold is the API's to judge.
	for _, j := range []struct {
		name string
		dst  *json.RawMessage
		eg   string
	}{{"args", &req.Args, `'["0x…", "1000"]'`}, {"metadata", &req.Metadata, `'{"order": 42}'`}} {
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
