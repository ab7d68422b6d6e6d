package schemas

import "encoding/json"

// DecodeClientFrame decodes a client frame into *f as json.Unmarshal(data, f) does on the zero
// ClientFrame: it sets *f to the zero value first, so the result never depends on what *f held.
// It gives the same value, and fails exactly when json.Unmarshal does, with json.Unmarshal's own
// error (a *json.SyntaxError, a *json.UnmarshalTypeError, ...). The common shapes of frames are
// decoded by hand (decodeClientFrameFast); anything else by encoding/json.
//
// Strings are copied out of data: callers keep the frame after data is reused.
func DecodeClientFrame(data []byte, f *ClientFrame) error {
	if f != nil {
		*f = ClientFrame{}
		if decodeClientFrameFast(data, f) {
			return nil
		}
		*f = ClientFrame{}
	}
	return json.Unmarshal(data, f)
}

// decodeClientFrameFast decodes the common shape of a client frame into *f, which must be the
// zero ClientFrame, without encoding/json. It reports false, leaving *f in any state, for anything
// outside that shape; when it reports true, *f is exactly what json.Unmarshal(data, f) gives.
//
// The shape is that of decodeEventFast (fastScanner): one object, keys exactly equal to
// ClientFrame's JSON names, strings with the escapes fastScanner.quoted takes, numbers as plain
// digits that fit in a uint64, and null for any field, with encoding/json's meaning: it leaves a
// string or bool as it is, and sets a pointer or slice to nil. The fields: the strings, msg and
// name (a new *string), seq, after and before (a new *uint64), public, and members and users
// (arrays of strings). limit, idle and remove fall back, as do unknown keys; a repeated key wins
// over the earlier ones, as in encoding/json.
func decodeClientFrameFast(data []byte, f *ClientFrame) bool {
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
		case "cmd":
			ok = s.str(&f.Cmd, true)
		case "id":
			ok = s.str(&f.ID, false)
		case "token":
			ok = s.str(&f.Token, false)
		case "conv":
			ok = s.str(&f.Conv, false)
		case "to":
			ok = s.str(&f.To, false)
		case "type":
			ok = s.str(&f.Type, true)
		case "msg":
			ok = s.strPtr(&f.Msg)
		case "mid":
			ok = s.str(&f.Mid, false)
		case "tid":
			ok = s.str(&f.Tid, false)
		case "name":
			ok = s.strPtr(&f.Name)
		case "public":
			ok = s.boolean(&f.Public)
		case "members":
			ok = s.strList(&f.Members)
		case "user":
			ok = s.str(&f.User, false)
		case "users":
			ok = s.strList(&f.Users)
		case "seq":
			ok = s.numPtr(&f.Seq)
		case "emoji":
			ok = s.str(&f.Emoji, false)
		case "after":
			ok = s.numPtr(&f.After)
		case "before":
			ok = s.numPtr(&f.Before)
		case "add":
			ok = s.str(&f.Add, false)
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
