// Package schemas is the single place that defines what goes over the wire and into NATS:
// identifier validation, subjects, stream/consumer/bucket definitions, and event and frame types.
//
// Nothing outside this package builds a subject or a key by string concatenation: every subject and
// key is produced here, from identifiers that have been validated here.
package schemas

import (
	"errors"
	"fmt"
	"strings"
)

// Identifier limits (PROTOCOL.md, "Identifiers" and "Limits").
const (
	MaxIDLen       = 64
	MaxFrameIDLen  = 64
	MaxNameLen     = 128
	MaxMsgBytes    = 16 * 1024
	MaxFrameBytes  = 64 * 1024
	MinPasswordLen = 8
	MaxPasswordLen = 1024
)

// ErrInvalidID is returned (wrapped) for any identifier that fails validation.
var ErrInvalidID = errors.New("invalid identifier")

// ValidUser reports whether s is a valid user id: ^[a-z0-9_-]{1,64}$.
func ValidUser(s string) bool { return validLower(s) }

// ValidGroup reports whether s is a valid group id: ^[a-z0-9_-]{1,64}$.
func ValidGroup(s string) bool { return validLower(s) }

// ValidMid reports whether s is a valid client message id: ^[A-Za-z0-9_-]{1,64}$.
func ValidMid(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Attachment ids: "a" followed by 22 random characters of [0-9A-Za-z], made by the gateway on
// upload; an attachment id is the object's name in AttachmentsBucket.
const (
	AttachmentIDPrefix = "a"
	attachmentIDLen    = 1 + 22
)

// ValidAttachmentID reports whether s is an attachment id: ^a[0-9A-Za-z]{22}$.
func ValidAttachmentID(s string) bool {
	if len(s) != attachmentIDLen || !strings.HasPrefix(s, AttachmentIDPrefix) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Metadata keys of an attachment object.
const (
	AttachmentMetaConv        = "conv"
	AttachmentMetaUploader    = "uploader"
	AttachmentMetaContentType = "contentType"
	AttachmentMetaSize        = "size"
	AttachmentMetaName        = "name"
	AttachmentMetaSHA256      = "sha256"
)

func validLower(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ConvKind distinguishes direct conversations from groups.
type ConvKind uint8

const (
	ConvDirect ConvKind = iota + 1
	ConvGroup
)

// Conv is a parsed, validated conversation id. The zero value is not a valid conversation.
type Conv struct {
	Kind ConvKind
	// A and B are the two users of a direct conversation, A < B.
	A, B string
	// Group is the group id of a group conversation.
	Group string
}

// ParseConv parses and validates a conversation id: "dm:<a>:<b>" with a < b, or "g:<group>".
// A non-canonical or self direct conversation is an error.
func ParseConv(s string) (Conv, error) {
	switch {
	case strings.HasPrefix(s, "dm:"):
		a, b, ok := strings.Cut(s[3:], ":")
		if !ok || !ValidUser(a) || !ValidUser(b) {
			return Conv{}, fmt.Errorf("%w: conversation %q", ErrInvalidID, truncate(s))
		}
		if a >= b {
			return Conv{}, fmt.Errorf("%w: direct conversation must be dm:<a>:<b> with a < b", ErrInvalidID)
		}
		return Conv{Kind: ConvDirect, A: a, B: b}, nil
	case strings.HasPrefix(s, "g:"):
		g := s[2:]
		if !ValidGroup(g) {
			return Conv{}, fmt.Errorf("%w: group %q", ErrInvalidID, truncate(s))
		}
		return Conv{Kind: ConvGroup, Group: g}, nil
	}
	return Conv{}, fmt.Errorf("%w: conversation %q", ErrInvalidID, truncate(s))
}

// DirectConv returns the canonical direct conversation of two distinct valid users.
func DirectConv(u1, u2 string) (Conv, error) {
	if !ValidUser(u1) || !ValidUser(u2) {
		return Conv{}, fmt.Errorf("%w: user", ErrInvalidID)
	}
	if u1 == u2 {
		return Conv{}, fmt.Errorf("%w: a direct conversation needs two different users", ErrInvalidID)
	}
	if u1 > u2 {
		u1, u2 = u2, u1
	}
	return Conv{Kind: ConvDirect, A: u1, B: u2}, nil
}

// GroupConv returns the conversation of a valid group id.
func GroupConv(g string) (Conv, error) {
	if !ValidGroup(g) {
		return Conv{}, fmt.Errorf("%w: group %q", ErrInvalidID, truncate(g))
	}
	return Conv{Kind: ConvGroup, Group: g}, nil
}

// String returns the protocol form of the conversation id.
func (c Conv) String() string {
	switch c.Kind {
	case ConvDirect:
		return "dm:" + c.A + ":" + c.B
	case ConvGroup:
		return "g:" + c.Group
	}
	return ""
}

// IsDirect reports whether c is a direct conversation.
func (c Conv) IsDirect() bool { return c.Kind == ConvDirect }

// Has reports whether user u is one of the two users of a direct conversation.
func (c Conv) Has(u string) bool { return c.Kind == ConvDirect && (c.A == u || c.B == u) }

// Other returns the other user of a direct conversation.
func (c Conv) Other(u string) string {
	if c.A == u {
		return c.B
	}
	return c.A
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
