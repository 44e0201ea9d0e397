package parse

import "unsafe"

// Clone returns a copy of ev that outlives the parser's next Parse and the
// line it parsed. raw must be the caller's copy of that line, byte for byte
// (so the Ranges stay right): it becomes the copy's Raw, and every string
// that was a view of the line becomes the same view of raw. Only the
// strings the parser unescaped into its own buffer are copied, to the end
// of arena; Groups and SourceIPs go to the end of lists. It returns the
// grown arena and lists for the next Clone; the copy's strings and slices
// view raw, arena and lists, so the caller must not write over what they
// hold while the copy is in use. Appending more is safe: when append moves
// an array, earlier views keep the old one alive.
//
// It lets a reader hand events on in bulk, with nothing allocated per
// event and little copied, and spares whoever receives them a second Parse.
func (ev *Event) Clone(raw, arena []byte, lists []string) (Event, []byte, []string) {
	c := *ev
	c.Raw = raw
	r := rebaser{line: ev.Raw, raw: raw}
	for _, s := range [...]*string{
		&c.AuditID, &c.Stage, &c.Level, &c.Verb, &c.RequestURI, &c.UserAgent,
		&c.Username, &c.UID, &c.ImpersonatedUser,
		&c.ObjectRef.Resource, &c.ObjectRef.Subresource, &c.ObjectRef.Namespace,
		&c.ObjectRef.Name, &c.ObjectRef.APIGroup, &c.ObjectRef.APIVersion,
		&c.Decision, &c.Reason,
	} {
		*s, arena = r.clone(*s, arena)
	}
	c.Groups, arena, lists = r.cloneAll(ev.Groups, arena, lists)
	c.SourceIPs, arena, lists = r.cloneAll(ev.SourceIPs, arena, lists)
	return c, arena, lists
}

// rebaser moves views of line to the same bytes of raw.
type rebaser struct{ line, raw []byte }

func (r rebaser) clone(s string, arena []byte) (string, []byte) {
	if s == "" {
		return "", arena
	}
	// Comparing addresses only: no pointer is made from an integer.
	p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
	base := uintptr(unsafe.Pointer(unsafe.SliceData(r.line)))
	if p >= base && p-base+uintptr(len(s)) <= uintptr(len(r.line)) {
		off := int(p - base)
		return unsafe.String(&r.raw[off], len(s)), arena
	}
	start := len(arena)
	arena = append(arena, s...)
	return unsafe.String(&arena[start], len(s)), arena
}

func (r rebaser) cloneAll(ss []string, arena []byte, lists []string) ([]string, []byte, []string) {
	if ss == nil {
		return nil, arena, lists
	}
	start := len(lists)
	for _, s := range ss {
		var c string
		c, arena = r.clone(s, arena)
		lists = append(lists, c)
	}
	return lists[start:len(lists):len(lists)], arena, lists
}
