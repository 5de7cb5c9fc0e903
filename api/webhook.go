package api

import (
	"context"
	"errors"

	"github.com/relayq/relayq/webhook"
)

// checkWebhookURL refuses a webhook_url this deployment cannot or will not
// deliver to: none is accepted without a signing secret, and one that is
// malformed, or names an address the SSRF policy refuses (a literal IP or
// localhost), is refused now rather than at its first delivery. Host names
// are checked again at every connection by the worker.
func (s *Server) checkWebhookURL(ctx context.Context, raw string) *Error {
	if raw == "" {
		return nil
	}
	if s.cfg.WebhookSecret == "" && s.cfg.WebhookSecrets[principalOf(ctx).name] == "" {
		return invalid("webhooks_disabled", "webhook_url", "webhook_url is not accepted: this deployment has no RELAYQ_WEBHOOK_SECRET, nor a secret for this API key in RELAYQ_WEBHOOK_SECRETS, to sign deliveries with")
	}
	err := webhook.NewPolicy(s.cfg.WebhookAllow).CheckURL(raw)
	var ue *webhook.URLError
	var re *webhook.RefusedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		return invalid("refused_address", "webhook_url", "webhook_url points to %s (%s), which webhooks may not reach unless RELAYQ_WEBHOOK_ALLOW_CIDRS allows it", re.Addr, re.Reason)
	case errors.As(err, &ue):
		return invalid("invalid_url", "webhook_url", "%s", ue.Error())
	default:
		return invalid("invalid_url", "webhook_url", "webhook_url: %v", err)
	}
}
