package parse

import "unsafe"

// Clone returns a copy of ev that outlives the parser's next Parse: its Raw
// is raw (the caller's copy of the line, byte for byte the line parsed, so
// the Ranges stay right), its strings are copied to the end of arena and
// its Groups and SourceIPs to the end of lists. It returns the grown arena
// and lists for the next Clone; the copy's strings and slices view them,
// so the caller must not write over what they hold while the copy is in
// use. Appending more is safe: when append moves an array, earlier views
// keep the old one alive.
//
// It lets a reader hand events on in bulk with one allocation per batch
// rather than per string, and spares whoever receives them a second Parse.
func (ev *Event) Clone(raw, arena []byte, lists []string) (Event, []byte, []string) {
	c := *ev
	c.Raw = raw
	for _, s := range [...]*string{
		&c.AuditID, &c.Stage, &c.Level, &c.Verb, &c.RequestURI, &c.UserAgent,
		&c.Username, &c.UID, &c.ImpersonatedUser,
		&c.ObjectRef.Resource, &c.ObjectRef.Subresource, &c.ObjectRef.Namespace,
		&c.ObjectRef.Name, &c.ObjectRef.APIGroup, &c.ObjectRef.APIVersion,
		&c.Decision, &c.Reason,
	} {
		*s, arena = cloneString(*s, arena)
	}
	c.Groups, arena, lists = cloneStrings(ev.Groups, arena, lists)
	c.SourceIPs, arena, lists = cloneStrings(ev.SourceIPs, arena, lists)
	return c, arena, lists
}

func cloneString(s string, arena []byte) (string, []byte) {
	if s == "" {
		return "", arena
	}
	start := len(arena)
	arena = append(arena, s...)
	return unsafe.String(&arena[start], len(s)), arena
}

func cloneStrings(ss []string, arena []byte, lists []string) ([]string, []byte, []string) {
	if ss == nil {
		return nil, arena, lists
	}
	start := len(lists)
	for _, s := range ss {
		var c string
		c, arena = cloneString(s, arena)
		lists = append(lists, c)
	}
	return lists[start:len(lists):len(lists)], arena, lists
}
