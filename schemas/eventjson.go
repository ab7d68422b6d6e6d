package schemas

import "unicode/utf8"

// decodeEventFast decodes the common shape of a log entry into *e, which must be the zero Event,
// without encoding/json. It reports false, leaving *e in any state, for anything outside that
// shape; the caller then resets *e and decodes with json.Unmarshal, which gives the result (or the
// error) for such input. When it reports true, *e is exactly what json.Unmarshal(data, e) gives.
//
// The shape: one JSON object, with whitespace wherever JSON allows it; keys exactly equal to
// Event's JSON names (encoding/json also matches other letter cases, and ignores unknown keys:
// those fall back); string values without escapes, in valid UTF-8; uint64 values as plain digits
// (no sign, fraction, exponent or leading zero) that fit; true or false for the bools; members as
// an array of such strings; and null for any field, which, as in encoding/json, leaves a string,
// number or bool as it is and sets members to nil. A repeated key wins over the earlier ones, as
// in encoding/json.
//
// Strings are copied out of data: callers keep the Event after data is reused.
func decodeEventFast(data []byte, e *Event) bool {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return skipSpace(data, i+1) == len(data)
	}
	for {
		// Key.
		if i >= len(data) || data[i] != '"' {
			return false
		}
		start := i + 1
		end := start
		for end < len(data) && data[end] != '"' && data[end] != '\\' {
			end++
		}
		if end >= len(data) || data[end] != '"' {
			return false
		}
		key := data[start:end]
		i = skipSpace(data, end+1)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		i = skipSpace(data, i+1)
		if i >= len(data) {
			return false
		}

		// Value.
		var ok bool
		switch string(key) {
		case "type":
			i, ok = fastString(data, i, &e.Type, true)
		case "conv":
			i, ok = fastString(data, i, &e.Conv, false)
		case "ts":
			i, ok = fastString(data, i, &e.Ts, false)
		case "from":
			i, ok = fastString(data, i, &e.From, false)
		case "mid":
			i, ok = fastString(data, i, &e.Mid, false)
		case "msgType":
			i, ok = fastString(data, i, &e.MsgType, true)
		case "msg":
			i, ok = fastString(data, i, &e.Msg, false)
		case "tid":
			i, ok = fastString(data, i, &e.Tid, false)
		case "kind":
			i, ok = fastString(data, i, &e.Kind, true)
		case "ref":
			i, ok = fastUint(data, i, &e.Ref)
		case "refFrom":
			i, ok = fastString(data, i, &e.RefFrom, false)
		case "emoji":
			i, ok = fastString(data, i, &e.Emoji, false)
		case "remove":
			i, ok = fastBool(data, i, &e.Remove)
		case "seq":
			i, ok = fastUint(data, i, &e.Seq)
		case "user":
			i, ok = fastString(data, i, &e.User, false)
		case "action":
			i, ok = fastString(data, i, &e.Action, true)
		case "by":
			i, ok = fastString(data, i, &e.By, false)
		case "name":
			i, ok = fastString(data, i, &e.Name, false)
		case "public":
			i, ok = fastBool(data, i, &e.Public)
		case "members":
			i, ok = fastMembers(data, i, &e.Members)
		}
		if !ok {
			return false
		}

		// A comma and the next key, or the end of the object and of the input.
		i = skipSpace(data, i)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return skipSpace(data, i+1) == len(data)
		default:
			return false
		}
	}
}

// skipSpace returns the index of the first byte at or after i that is not JSON whitespace.
func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// hasLiteral reports whether data[i:] starts with lit.
func hasLiteral(data []byte, i int, lit string) bool {
	return len(data)-i >= len(lit) && string(data[i:i+len(lit)]) == lit
}

// fastQuoted scans the string value at data[i] (a quote): it returns its contents and the index
// after the closing quote, or false if it is not a string, has an escape or a control character,
// or is not valid UTF-8 (encoding/json would replace the invalid bytes).
func fastQuoted(data []byte, i int) ([]byte, int, bool) {
	if data[i] != '"' {
		return nil, 0, false
	}
	start := i + 1
	ascii := true
	for j := start; j < len(data); j++ {
		c := data[j]
		switch {
		case c == '"':
			s := data[start:j]
			if !ascii && !utf8.Valid(s) {
				return nil, 0, false
			}
			return s, j + 1, true
		case c == '\\' || c < 0x20:
			return nil, 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, 0, false
}

// fastString decodes the string or null at data[i] (i < len(data)) into *dst and returns the index
// after it. With intern, the usual values of the enumerated fields (types, kinds, message types,
// actions) are the constants themselves, not copies.
func fastString(data []byte, i int, dst *string, intern bool) (int, bool) {
	if data[i] == 'n' {
		// null leaves a string as it is.
		return i + 4, hasLiteral(data, i, "null")
	}
	s, next, ok := fastQuoted(data, i)
	if !ok {
		return 0, false
	}
	if intern {
		if c, found := internEnum(s); found {
			*dst = c
			return next, true
		}
	}
	*dst = string(s)
	return next, true
}

// internEnum returns the constant equal to s, if s is one of the fixed values of the enumerated
// fields. The switch on string(s) does not allocate.
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
	}
	return "", false
}

// fastUint decodes the number or null at data[i] (i < len(data)) into *dst and returns the index
// after it. It takes plain digits without a leading zero that fit in a uint64: anything else is
// either a syntax error or a type error for encoding/json, and falls back. A following '.', 'e'
// or digit (after a leading zero) is left for the caller, which rejects it as it expects a space,
// a comma or a closing brace.
func fastUint(data []byte, i int, dst *uint64) (int, bool) {
	c := data[i]
	if c == 'n' {
		// null leaves a number as it is.
		return i + 4, hasLiteral(data, i, "null")
	}
	if c < '0' || c > '9' {
		return 0, false
	}
	if c == '0' {
		*dst = 0
		return i + 1, true
	}
	const maxUint = ^uint64(0)
	var v uint64
	for ; i < len(data); i++ {
		c = data[i]
		if c < '0' || c > '9' {
			break
		}
		d := uint64(c - '0')
		if v > (maxUint-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	*dst = v
	return i, true
}

// fastBool decodes true, false or null at data[i] (i < len(data)) into *dst and returns the index
// after it.
func fastBool(data []byte, i int, dst *bool) (int, bool) {
	switch data[i] {
	case 't':
		*dst = true
		return i + 4, hasLiteral(data, i, "true")
	case 'f':
		*dst = false
		return i + 5, hasLiteral(data, i, "false")
	case 'n':
		// null leaves a bool as it is.
		return i + 4, hasLiteral(data, i, "null")
	}
	return 0, false
}

// fastMembers decodes the array of strings, or null, at data[i] (i < len(data)) into *dst and
// returns the index after it. As in encoding/json, null sets nil and [] an empty slice, not nil.
// A null element falls back: encoding/json leaves the slot as it was, which for a repeated
// members key may be an element of the earlier array.
func fastMembers(data []byte, i int, dst *[]string) (int, bool) {
	switch data[i] {
	case 'n':
		*dst = nil
		return i + 4, hasLiteral(data, i, "null")
	case '[':
	default:
		return 0, false
	}
	i = skipSpace(data, i+1)
	if i >= len(data) {
		return 0, false
	}
	if data[i] == ']' {
		*dst = []string{}
		return i + 1, true
	}
	var list []string
	for {
		s, next, ok := fastQuoted(data, i)
		if !ok {
			return 0, false
		}
		list = append(list, string(s))
		i = skipSpace(data, next)
		if i >= len(data) {
			return 0, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
			if i >= len(data) {
				return 0, false
			}
		case ']':
			*dst = list
			return i + 1, true
		default:
			return 0, false
		}
	}
}
