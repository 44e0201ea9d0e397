package elasticsearch

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/audit-shipper/audit-shipper/sinks"
)

// componentTemplate maps audit events with the bodies as text. It is
// shipped as deploy/elasticsearch/component-template.json too (a test
// keeps the two equal).
//
//go:embed component-template.json
var componentTemplate []byte

// templatePriority beats Elasticsearch's built-in logs-*-* template (100),
// which the default data stream name also matches.
const templatePriority = 200

// componentName is the component template's name for a body encoding.
func componentName(bodies string) string {
	if bodies == BodyObject {
		return "audit-shipper-mappings-object"
	}
	return "audit-shipper-mappings"
}

// componentFor returns the component template for a body encoding: under
// BodyObject the bodies are kept in _source but not indexed, so their
// fields can neither reach the field limit nor conflict on types.
func componentFor(bodies string) ([]byte, error) {
	if bodies != BodyObject {
		return componentTemplate, nil
	}
	var t map[string]any
	if err := json.Unmarshal(componentTemplate, &t); err != nil {
		return nil, err
	}
	props := t["template"].(map[string]any)["mappings"].(map[string]any)["properties"].(map[string]any)
	for _, f := range []string{"requestObject", "responseObject"} {
		props[f] = map[string]any{"type": "object", "enabled": false}
	}
	t["_meta"].(map[string]any)["description"] = "audit-shipper: Kubernetes audit events (audit.k8s.io/v1), bodies as objects kept in _source, not indexed"
	return json.MarshalIndent(t, "", "  ")
}

// indexTemplateName names the index template after the pattern it
// matches, so that templates installed by hand from deploy/ and by the
// sink are the same ones.
func indexTemplateName(t *target) string {
	return "audit-shipper-" + strings.TrimRight(t.pattern(), "*-._")
}

// indexTemplateFor is the index template for t, composed of the
// component template.
func indexTemplateFor(t *target, component string) ([]byte, error) {
	tmpl := map[string]any{
		"index_patterns": []string{t.pattern()},
		"composed_of":    []string{component},
		"priority":       templatePriority,
		"_meta":          map[string]any{"managed_by": "audit-shipper"},
	}
	if t.dataStream {
		tmpl["data_stream"] = map[string]any{}
	}
	return json.MarshalIndent(tmpl, "", "  ")
}

// Start installs the component and index templates when install_template
// is set; the shipper calls it once before the first Send. Documents
// indexed before the templates exist get dynamic mappings, and a data
// stream needs its template before its first document.
//
// It returns a *sinks.RetryableError when trying again may help (no
// answer, 429, 5xx, or 401/403: missing manage_index_templates privilege)
// and a *sinks.PermanentError when the server refused a template.
func (s *Sink) Start(ctx context.Context) error {
	if !s.set.InstallTemplate {
		return nil
	}
	comp := componentName(s.set.BodyEncoding)
	body, err := componentFor(s.set.BodyEncoding)
	if err != nil {
		return fmt.Errorf("cannot build the component template: %w", err)
	}
	if err := s.put(ctx, "/_component_template/"+comp, body); err != nil {
		return err
	}
	if body, err = indexTemplateFor(s.set.target, comp); err != nil {
		return fmt.Errorf("cannot build the index template: %w", err)
	}
	name := indexTemplateName(s.set.target)
	if err := s.put(ctx, "/_index_template/"+name, body); err != nil {
		return err
	}
	s.log.Info("installed the Elasticsearch templates", "component_template", comp, "index_template", name, "index_pattern", s.set.target.pattern())
	return nil
}

func (s *Sink) put(ctx context.Context, path string, body []byte) error {
	rctx, cancel := context.WithTimeout(ctx, s.set.Timeout.D())
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPut, path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("cannot build the request PUT %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.perform(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return sinks.Retryable(fmt.Errorf("cannot install the template with PUT %s: %w", path, err), 0)
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	err = fmt.Errorf("installing the template with PUT %s: %s: %s", path, resp.Status, excerpt(answer))
	switch st := resp.StatusCode; {
	case st >= 200 && st < 300:
		return nil
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		return sinks.Retryable(fmt.Errorf("%w; the sink's user needs the manage_index_templates cluster privilege, or set install_template: false and install deploy/elasticsearch by hand", err), retryAfter(resp.Header, time.Now()))
	case st == http.StatusTooManyRequests || st >= 500:
		return sinks.Retryable(err, retryAfter(resp.Header, time.Now()))
	default:
		return sinks.Permanent("template_rejected", fmt.Errorf("%w; the server does not accept the template (Elasticsearch 7.8 or later, or OpenSearch 1.0 or later, is needed for composable templates); set install_template: false and adapt deploy/elasticsearch by hand", err))
	}
}
