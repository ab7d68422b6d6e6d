package schemas

import (
	"bytes"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeEventFast decodes the common shape of a log entry into *e, which must be the zero Event,
// without encoding/json. It reports false, leaving *e in any state, for anything outside that
// shape; the caller then resets *e and decodes with json.Unmarshal, which gives the result (or the
// error) for such input. When it reports true, *e is exactly what json.Unmarshal(data, e) gives.
//
// The shape: one JSON object, with whitespace wherever JSON allows it; keys exactly equal to
// Event's JSON names, without escapes (encoding/json also matches other letter cases, and ignores
// unknown keys: those fall back); string values as fastScanner.quoted takes them (valid UTF-8,
// escapes other than escaped surrogates); uint64 values as plain digits (no sign, fraction,
// exponent or leading zero) that fit; true or false for the bools; members as an array of such
// strings; and null for any field, which, as in encoding/json, leaves a string, number or bool as
// it is and sets members to nil. A repeated key wins over the earlier ones, as in encoding/json.
//
// Strings are copied out of data: callers keep the Event after data is reused.
func decodeEventFast(data []byte, e *Event) bool {
	s := fastScanner{data: data}
	if empty, ok := s.openObject(); !ok || empty {
		return ok
	}
	for {
		key, ok := s.key()
		if !ok {
			return false
		}
		switch string(key) {
		case "type":
			ok = s.str(&e.Type, true)
		case "conv":
			ok = s.str(&e.Conv, false)
		case "ts":
			ok = s.str(&e.Ts, false)
		case "from":
			ok = s.str(&e.From, false)
		case "mid":
			ok = s.str(&e.Mid, false)
		case "msgType":
			ok = s.str(&e.MsgType, true)
		case "msg":
			ok = s.str(&e.Msg, false)
		case "tid":
			ok = s.str(&e.Tid, false)
		case "kind":
			ok = s.str(&e.Kind, true)
		case "ref":
			ok = s.num(&e.Ref)
		case "refFrom":
			ok = s.str(&e.RefFrom, false)
		case "emoji":
			ok = s.str(&e.Emoji, false)
		case "remove":
			ok = s.boolean(&e.Remove)
		case "seq":
			ok = s.num(&e.Seq)
		case "user":
			ok = s.str(&e.User, false)
		case "action":
			ok = s.str(&e.Action, true)
		case "by":
			ok = s.str(&e.By, false)
		case "name":
			ok = s.str(&e.Name, false)
		case "public":
			ok = s.boolean(&e.Public)
		case "members":
			ok = s.strList(&e.Members)
		default:
			return false
		}
		if !ok {
			return false
		}
		if !s.comma() {
			if more, ok := s.next(); !ok || !more {
				return ok
			}
		}
	}
}

// internEnum returns the constant equal to s, if s is one of the fixed values of the enumerated
// fields of events (types, kinds, message types, actions) and of client frames (commands). The
// switch on string(s) does not allocate.
func internEnum(s []byte) (string, bool) {
	switch string(s) {
	case TypeMessage:
		return TypeMessage, true
	case TypeMember:
		return TypeMember, true
	case TypeRead:
		return TypeRead, true
	case TypeContact:
		return TypeContact, true
	case TypeGone:
		return TypeGone, true
	case "text":
		return "text", true
	case "image":
		return "image", true
	case "audio":
		return "audio", true
	case "file":
		return "file", true
	case KindEdit:
		return KindEdit, true
	case KindDelete:
		return KindDelete, true
	case KindReact:
		return KindReact, true
	case ActionJoined:
		return ActionJoined, true
	case ActionLeft:
		return ActionLeft, true
	case ActionInvited:
		return ActionInvited, true
	case ContactAdd:
		return ContactAdd, true
	case ContactRemove:
		return ContactRemove, true
	// The client commands that are not also one of the above.
	case CmdLogin:
		return CmdLogin, true
	case CmdMessage:
		return CmdMessage, true
	case CmdCreate:
		return CmdCreate, true
	case CmdJoin:
		return CmdJoin, true
	case CmdLeave:
		return CmdLeave, true
	case CmdInvite:
		return CmdInvite, true
	case CmdRead:
		return CmdRead, true
	case CmdTyping:
		return CmdTyping, true
	case CmdSync:
		return CmdSync, true
	case CmdHistory:
		return CmdHistory, true
	case CmdConversations:
		return CmdConversations, true
	case CmdPresence:
		return CmdPresence, true
	case CmdContacts:
		return CmdContacts, true
	case CmdPing:
		return CmdPing, true
	case CmdActivity:
		return CmdActivity, true
	}
	return "", false
}

// fastScanner reads the one JSON object that the hand-written decoders (decodeEventFast here,
// decodeClientFrameFast in framejson.go) take, member by member: openObject, then for each member
// key, the method for the value's field (str, strPtr, num, numPtr, boolean, strList), and comma or
// next. Every method reports false for anything outside the shapes it takes, syntax errors
// included, and the decoder then falls back to encoding/json: a decoder that reads the whole
// object with these methods gets what encoding/json would give, or falls back.
//
// The value methods expect s.i < len(s.data), as key leaves it. Strings are copied out of data,
// never aliased: callers keep the values after data is reused.
type fastScanner struct {
	data []byte
	i    int // the next byte to read
}

// skipSpace moves past JSON whitespace.
func (s *fastScanner) skipSpace() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// openObject reads the opening brace of the object, and the whitespace around it. It reports
// empty for an object without members, which it reads to its end, as next does.
func (s *fastScanner) openObject() (empty, ok bool) {
	s.skipSpace()
	if s.i >= len(s.data) || s.data[s.i] != '{' {
		return false, false
	}
	s.i++
	s.skipSpace()
	if s.i < len(s.data) && s.data[s.i] == '}' {
		s.i++
		s.skipSpace()
		return true, s.i == len(s.data)
	}
	return false, true
}

// key reads a member's key, with the whitespace before it, its colon and the whitespace up to its
// value, and returns the key as it is in data. A key with an escape falls back.
func (s *fastScanner) key() ([]byte, bool) {
	s.skipSpace()
	d := s.data
	if s.i >= len(d) || d[s.i] != '"' {
		return nil, false
	}
	start := s.i + 1
	end := start
	for end < len(d) && d[end] != '"' && d[end] != '\\' {
		end++
	}
	if end >= len(d) || d[end] != '"' {
		return nil, false
	}
	s.i = end + 1
	s.skipSpace()
	if s.i >= len(d) || d[s.i] != ':' {
		return nil, false
	}
	s.i++
	s.skipSpace()
	if s.i >= len(d) {
		return nil, false
	}
	return d[start:end], true
}

// next reads what follows a member's value: a comma (more; key reads the whitespace after it), or
// the closing brace, after which only whitespace may follow (not more). The usual comma right
// after the value is left to an inlined check: decoders call next as
//
//	if !s.comma() { more, ok := s.next(); ... }
func (s *fastScanner) next() (more, ok bool) {
	s.skipSpace()
	if s.i >= len(s.data) {
		return false, false
	}
	switch s.data[s.i] {
	case ',':
		s.i++
		return true, true
	case '}':
		s.i++
		s.skipSpace()
		return false, s.i == len(s.data)
	}
	return false, false
}

// comma reads a comma right at s.i, if there is one.
func (s *fastScanner) comma() bool {
	if s.i < len(s.data) && s.data[s.i] == ',' {
		s.i++
		return true
	}
	return false
}

// literal reads lit (null, true or false). Whatever follows it is left to the caller, which
// rejects a letter as it expects a space, a comma or a closing bracket.
func (s *fastScanner) literal(lit string) bool {
	if len(s.data)-s.i < len(lit) || string(s.data[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// quoted reads the string at s.i and returns its contents as they are in data, and their length
// once decoded, which is less than len(raw) exactly when raw has escapes. It takes valid UTF-8
// (encoding/json replaces invalid bytes) without control characters (a syntax error), with the
// escapes \" \\ \/ \b \f \n \r \t and \uXXXX, except for the surrogates U+D800 to U+DFFF, whose
// pairing encoding/json resolves in ways best left to it.
func (s *fastScanner) quoted() (raw []byte, size int, ok bool) {
	d := s.data
	if d[s.i] != '"' {
		return nil, 0, false
	}
	start := s.i + 1
	shrink := 0 // how much shorter the escapes are once decoded
	ascii := true
	j := start
	for {
		for j < len(d) && plainASCII[d[j]] {
			j++
		}
		if j >= len(d) {
			return nil, 0, false
		}
		switch c := d[j]; {
		case c == '"':
			raw = d[start:j]
			// The escapes are ASCII: they leave the validity of the rest as it is.
			if !ascii && !utf8.Valid(raw) {
				return nil, 0, false
			}
			s.i = j + 1
			return raw, len(raw) - shrink, true
		case c == '\\':
			if j+1 >= len(d) {
				return nil, 0, false
			}
			switch d[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
				shrink++
			case 'u':
				if len(d)-j < 6 {
					return nil, 0, false
				}
				r := hex4(d[j+2 : j+6])
				if r < 0 || utf16.IsSurrogate(r) {
					return nil, 0, false
				}
				j += 6
				shrink += 6 - utf8.RuneLen(r)
			default:
				return nil, 0, false
			}
		case c < 0x20:
			return nil, 0, false
		default:
			// The bytes of a multi-byte character, checked at the end.
			ascii = false
			j++
		}
	}
}

// plainASCII tells the bytes that stand for themselves in a JSON string and need no check: ASCII
// but for the control characters, the quote and the backslash.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// hex4 returns the value of the four hex digits that b starts with, or -1.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// unescape decodes raw, the contents of a string that quoted took, size bytes long once decoded,
// into a new string: one allocation.
func unescape(raw []byte, size int) string {
	var b strings.Builder
	b.Grow(size)
	for len(raw) > 0 {
		k := bytes.IndexByte(raw, '\\')
		if k < 0 {
			b.Write(raw)
			break
		}
		b.Write(raw[:k])
		raw = raw[k:]
		switch c := raw[1]; c {
		case 'u':
			b.WriteRune(hex4(raw[2:6]))
			raw = raw[6:]
		default:
			switch c {
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			}
			// '"', '\\' and '/' stand for themselves.
			b.WriteByte(c)
			raw = raw[2:]
		}
	}
	return b.String()
}

// decoded returns a copy of raw, the contents of a string that quoted took, size bytes long once
// decoded, with its escapes decoded.
func decoded(raw []byte, size int) string {
	if size < len(raw) {
		return unescape(raw, size)
	}
	return string(raw)
}

// str reads a string or null into *dst. null leaves a string as it is, as in encoding/json. With
// intern, the usual values of the enumerated fields (internEnum) are the constants themselves, not
// copies.
func (s *fastScanner) str(dst *string, intern bool) bool {
	if s.data[s.i] == 'n' {
		return s.literal("null")
	}
	raw, size, ok := s.quoted()
	if !ok {
		return false
	}
	if intern && size == len(raw) {
		if c, found := internEnum(raw); found {
			*dst = c
			return true
		}
	}
	*dst = decoded(raw, size)
	return true
}

// strPtr reads a string into a new *string at *dst, or null, which sets *dst to nil as in
// encoding/json.
func (s *fastScanner) strPtr(dst **string) bool {
	if s.data[s.i] == 'n' {
		*dst = nil
		return s.literal("null")
	}
	raw, size, ok := s.quoted()
	if !ok {
		return false
	}
	v := decoded(raw, size)
	*dst = &v
	return true
}

// digits reads a number as plain digits without a leading zero that fit in a uint64: anything
// else is either a syntax error or a type error for encoding/json, and falls back. A following
// '.', 'e' or digit (after a leading zero) is left for the caller, which rejects it as it expects
// a space, a comma or a closing bracket.
func (s *fastScanner) digits() (uint64, bool) {
	d := s.data
	c := d[s.i]
	if c < '0' || c > '9' {
		return 0, false
	}
	if c == '0' {
		s.i++
		return 0, true
	}
	const maxUint = ^uint64(0)
	var v uint64
	i := s.i
	for ; i < len(d); i++ {
		c = d[i]
		if c < '0' || c > '9' {
			break
		}
		n := uint64(c - '0')
		if v > (maxUint-n)/10 {
			return 0, false
		}
		v = v*10 + n
	}
	s.i = i
	return v, true
}

// num reads a number (as digits takes it) or null into *dst. null leaves a number as it is, as
// in encoding/json.
func (s *fastScanner) num(dst *uint64) bool {
	if s.data[s.i] == 'n' {
		return s.literal("null")
	}
	v, ok := s.digits()
	if ok {
		*dst = v
	}
	return ok
}

// numPtr reads a number (as digits takes it) into a new *uint64 at *dst, or null, which sets
// *dst to nil as in encoding/json.
func (s *fastScanner) numPtr(dst **uint64) bool {
	if s.data[s.i] == 'n' {
		*dst = nil
		return s.literal("null")
	}
	v, ok := s.digits()
	if ok {
		*dst = &v
	}
	return ok
}

// boolean reads true, false or null into *dst. null leaves a bool as it is, as in encoding/json.
func (s *fastScanner) boolean(dst *bool) bool {
	switch s.data[s.i] {
	case 't':
		*dst = true
		return s.literal("true")
	case 'f':
		*dst = false
		return s.literal("false")
	case 'n':
		return s.literal("null")
	}
	return false
}

// strList reads an array of strings, or null, into *dst. As in encoding/json, null sets nil and
// [] an empty slice, not nil. A null element falls back: encoding/json leaves the slot as it was,
// which for a repeated key may be an element of the earlier array.
func (s *fastScanner) strList(dst *[]string) bool {
	d := s.data
	switch d[s.i] {
	case 'n':
		*dst = nil
		return s.literal("null")
	case '[':
	default:
		return false
	}
	s.i++
	s.skipSpace()
	if s.i >= len(d) {
		return false
	}
	if d[s.i] == ']' {
		s.i++
		*dst = []string{}
		return true
	}
	var list []string
	for {
		raw, size, ok := s.quoted()
		if !ok {
			return false
		}
		list = append(list, decoded(raw, size))
		s.skipSpace()
		if s.i >= len(d) {
			return false
		}
		switch d[s.i] {
		case ',':
			s.i++
			s.skipSpace()
			if s.i >= len(d) {
				return false
			}
		case ']':
			s.i++
			*dst = list
			return true
		default:
			return false
		}
	}
}
