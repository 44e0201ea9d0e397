package parse

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"time"
	"unicode/utf8"

	k8sjson "sigs.k8s.io/json"
)

// oracleEvent has the fields the decoder reads, typed as in
// k8s.io/apiserver/pkg/apis/audit/v1 (pointers where Kubernetes has them).
type oracleEvent struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Level      string `json:"level"`
	AuditID    string `json:"auditID"`
	Stage      string `json:"stage"`
	RequestURI string `json:"requestURI"`
	Verb       string `json:"verb"`
	User       struct {
		Username string   `json:"username"`
		UID      string   `json:"uid"`
		Groups   []string `json:"groups"`
	} `json:"user"`
	ImpersonatedUser *struct {
		Username string `json:"username"`
	} `json:"impersonatedUser"`
	SourceIPs []string `json:"sourceIPs"`
	UserAgent string   `json:"userAgent"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		APIGroup    string `json:"apiGroup"`
		APIVersion  string `json:"apiVersion"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int32 `json:"code"`
	} `json:"responseStatus"`
	RequestObject            json.RawMessage   `json:"requestObject"`
	ResponseObject           json.RawMessage   `json:"responseObject"`
	RequestReceivedTimestamp time.Time         `json:"requestReceivedTimestamp"`
	StageTimestamp           time.Time         `json:"stageTimestamp"`
	Annotations              map[string]string `json:"annotations"`
}

// oracle decodes line with Kubernetes' case-sensitive decoder and applies the
// audit Event checks. It returns the Event the decoder must produce, with
// ranges given as their bytes (offsets are checked separately).
type oracleResult struct {
	ev                                    Event
	reqObj, respObj, annotations          []byte
	reqMF, respMF                         []byte
	hasReqObj, hasRespObj, hasAnnotations bool
	hasReqMF, hasRespMF                   bool
}

func oracle(line []byte) (*oracleResult, error) {
	var o oracleEvent
	if err := k8sjson.UnmarshalCaseSensitivePreserveInts(line, &o); err != nil {
		return nil, err
	}
	switch {
	case o.Kind != "Event":
		return nil, fmt.Errorf("kind %q", o.Kind)
	case o.APIVersion != "audit.k8s.io/v1" && o.APIVersion != "audit.k8s.io/v1beta1":
		return nil, fmt.Errorf("apiVersion %q", o.APIVersion)
	case o.AuditID == "":
		return nil, fmt.Errorf("no auditID")
	case o.Stage == "":
		return nil, fmt.Errorf("no stage")
	}
	r := &oracleResult{}
	e := &r.ev
	e.Raw = line
	e.AuditID, e.Stage, e.Level, e.Verb, e.RequestURI, e.UserAgent = o.AuditID, o.Stage, o.Level, o.Verb, o.RequestURI, o.UserAgent
	e.Username, e.UID, e.Groups = o.User.Username, o.User.UID, o.User.Groups
	if o.ImpersonatedUser != nil {
		e.ImpersonatedUser = o.ImpersonatedUser.Username
	}
	e.SourceIPs = o.SourceIPs
	if o.ObjectRef != nil {
		e.HasObjectRef = true
		e.ObjectRef = ObjectRef(*o.ObjectRef)
	}
	if o.ResponseStatus != nil {
		e.Code = int(o.ResponseStatus.Code)
	}
	e.RequestReceived, e.StageTime = o.RequestReceivedTimestamp, o.StageTimestamp
	e.Decision, e.Reason = o.Annotations["authorization.k8s.io/decision"], o.Annotations["authorization.k8s.io/reason"]
	r.reqObj, r.hasReqObj = o.RequestObject, o.RequestObject != nil
	r.respObj, r.hasRespObj = o.ResponseObject, o.ResponseObject != nil
	r.reqMF, r.hasReqMF = managedFields(o.RequestObject)
	r.respMF, r.hasRespMF = managedFields(o.ResponseObject)
	// The annotations range is taken from a second decode into a RawMessage.
	var raw struct {
		Annotations json.RawMessage `json:"annotations"`
	}
	if err := k8sjson.UnmarshalCaseSensitivePreserveInts(line, &raw); err != nil {
		return nil, fmt.Errorf("second decode: %w", err)
	}
	r.annotations, r.hasAnnotations = raw.Annotations, raw.Annotations != nil
	return r, nil
}

// managedFields is metadata.managedFields of a body, when the body is an
// object whose last metadata is an object.
func managedFields(body []byte) ([]byte, bool) {
	var obj map[string]json.RawMessage
	if k8sjson.UnmarshalCaseSensitivePreserveInts(body, &obj) != nil {
		return nil, false
	}
	var md map[string]json.RawMessage
	if k8sjson.UnmarshalCaseSensitivePreserveInts(obj["metadata"], &md) != nil {
		return nil, false
	}
	mf, ok := md["managedFields"]
	return mf, ok
}

// kubeTime is the timestamp grammar the decoder accepts (see parseTime).
var kubeTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$`)

// compare checks the decoder's answer against the oracle's and returns a
// description of the first difference, or "" when they agree (including the
// documented deliberate differences).
func compare(line []byte, got *Event, gotErr error) string {
	want, wantErr := oracle(line)
	if gotErr != nil {
		perr, ok := gotErr.(*Error)
		if !ok {
			return fmt.Sprintf("error of type %T: %v", gotErr, gotErr)
		}
		if perr.Offset < 0 || perr.Offset > len(line) {
			return fmt.Sprintf("error offset %d outside the line of %d bytes", perr.Offset, len(line))
		}
		if !slices.Contains(Reasons, perr.Reason) {
			return fmt.Sprintf("unknown reason %q", perr.Reason)
		}
		if perr.Reason == ReasonInvalidUTF8 && utf8.Valid(line) {
			return fmt.Sprintf("invalid_utf8 on valid UTF-8: %v", perr)
		}
		if wantErr != nil {
			return ""
		}
		// Deliberate differences: invalid UTF-8 and lenient timestamps.
		if !utf8.Valid(line) {
			return ""
		}
		if perr.Reason == ReasonNotEvent && hasLenientTime(line) {
			return ""
		}
		return fmt.Sprintf("decoder rejects what the oracle accepts: %v", perr)
	}
	if wantErr != nil {
		return fmt.Sprintf("decoder accepts what the oracle rejects (%v)", wantErr)
	}
	if !utf8.Valid(line) {
		return "decoder accepts invalid UTF-8"
	}
	w := &want.ev
	type pair struct {
		name      string
		got, want any
	}
	eqStrs := func(a, b []string) bool { return len(a) == len(b) && (len(a) == 0 || slices.Equal(a, b)) }
	for _, c := range []pair{
		{"AuditID", got.AuditID, w.AuditID}, {"Stage", got.Stage, w.Stage}, {"Level", got.Level, w.Level},
		{"Verb", got.Verb, w.Verb}, {"RequestURI", got.RequestURI, w.RequestURI}, {"UserAgent", got.UserAgent, w.UserAgent},
		{"Username", got.Username, w.Username}, {"UID", got.UID, w.UID},
		{"ImpersonatedUser", got.ImpersonatedUser, w.ImpersonatedUser},
		{"ObjectRef", got.ObjectRef, w.ObjectRef}, {"HasObjectRef", got.HasObjectRef, w.HasObjectRef},
		{"Code", got.Code, w.Code}, {"Decision", got.Decision, w.Decision}, {"Reason", got.Reason, w.Reason},
	} {
		if c.got != c.want {
			return fmt.Sprintf("%s = %#v, oracle %#v", c.name, c.got, c.want)
		}
	}
	if !eqStrs(got.Groups, w.Groups) {
		return fmt.Sprintf("Groups = %q, oracle %q", got.Groups, w.Groups)
	}
	if !eqStrs(got.SourceIPs, w.SourceIPs) {
		return fmt.Sprintf("SourceIPs = %q, oracle %q", got.SourceIPs, w.SourceIPs)
	}
	if !got.RequestReceived.Equal(w.RequestReceived) || !got.StageTime.Equal(w.StageTime) {
		return fmt.Sprintf("times = %v %v, oracle %v %v", got.RequestReceived, got.StageTime, w.RequestReceived, w.StageTime)
	}
	if got.RequestReceived.IsZero() != w.RequestReceived.IsZero() || got.StageTime.IsZero() != w.StageTime.IsZero() {
		return "zero time mismatch"
	}
	if string(got.Raw) != string(line) {
		return "Raw is not the line"
	}
	for _, c := range []struct {
		name string
		r    Range
		has  bool
		want []byte
		key  string
	}{
		{"RequestObject", got.RequestObject, want.hasReqObj, want.reqObj, "requestObject"},
		{"ResponseObject", got.ResponseObject, want.hasRespObj, want.respObj, "responseObject"},
		{"Annotations", got.Annotations, want.hasAnnotations, want.annotations, "annotations"},
		{"RequestManagedFields", got.RequestManagedFields, want.hasReqMF, want.reqMF, "managedFields"},
		{"ResponseManagedFields", got.ResponseManagedFields, want.hasRespMF, want.respMF, "managedFields"},
	} {
		if msg := checkRange(line, c.r, c.has, c.want, c.key); msg != "" {
			return c.name + ": " + msg
		}
	}
	return ""
}

func checkRange(line []byte, r Range, has bool, want []byte, key string) string {
	if r.Present() != has {
		return fmt.Sprintf("present = %v, oracle %v", r.Present(), has)
	}
	if !has {
		if r != (Range{}) {
			return fmt.Sprintf("absent but %+v", r)
		}
		return ""
	}
	if r.KeyStart < 0 || r.KeyStart >= r.ValueStart || r.ValueStart >= r.ValueEnd || r.ValueEnd > len(line) {
		return fmt.Sprintf("bad range %+v", r)
	}
	if string(line[r.ValueStart:r.ValueEnd]) != string(want) {
		return fmt.Sprintf("value %q, oracle %q", line[r.ValueStart:r.ValueEnd], want)
	}
	// The key at KeyStart must be the member's key, followed by ':' and the value.
	var k string
	dec := json.NewDecoder(bytes.NewReader(line[r.KeyStart:r.ValueStart]))
	if err := dec.Decode(&k); err != nil || k != key {
		return fmt.Sprintf("KeyStart %d does not start the key %q: %q", r.KeyStart, key, line[r.KeyStart:r.ValueStart])
	}
	return ""
}

// hasLenientTime reports whether a timestamp of the line is one that only the
// oracle's lenient fallback accepts.
func hasLenientTime(line []byte) bool {
	var raw struct {
		A json.RawMessage `json:"requestReceivedTimestamp"`
		B json.RawMessage `json:"stageTimestamp"`
	}
	if k8sjson.UnmarshalCaseSensitivePreserveInts(line, &raw) != nil {
		return false
	}
	for _, t := range [][]byte{raw.A, raw.B} {
		if len(t) >= 2 && t[0] == '"' && !kubeTime.Match(t[1:len(t)-1]) {
			return true
		}
	}
	return false
}
