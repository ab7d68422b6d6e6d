package schemas

// The unread service's NATS contract. Requests go to the queue group "unread" (any instance
// answers); pushes are core NATS publishes to every gateway:
//
//	chat.unread.changed.<user>        unread -> gateways: UnreadChanged, a count changed because of
//	                                  the user's own read or a delete (new messages change counts
//	                                  without a push: clients count the message frames they get)
//	chat.unread.req.conversations     gateway -> unread: ConversationsRequest -> ConversationsReply
//	chat.unread.req.state             operator -> unread: UnreadStateRequest -> the projection's
//	                                  state (for `unread check`)
//	object store chat_unread          snapshots of the projection, object "state"
const (
	UnreadQueue           = "unread"
	subjUnreadChanged     = "chat.unread.changed."
	UnreadChangedAll      = "chat.unread.changed.*"
	UnreadConversationsRq = "chat.unread.req.conversations"
	UnreadStateRq         = "chat.unread.req.state"
	UnreadSnapshotBucket  = "chat_unread"
	UnreadSnapshotObject  = "state"
)

// UnreadChangedSubject carries the unread changes of user.
func UnreadChangedSubject(user string) string { return subjUnreadChanged + mustUser(user) }

// UnreadChanged is a changed count of User in Conv. Cause is the stream sequence of the event that
// changed it (a read or a delete): every instance of the unread service publishes the same change,
// and gateways drop one whose Cause they have already pushed.
type UnreadChanged struct {
	User    string `json:"user"`
	Conv    string `json:"conv"`
	Count   int    `json:"count"`
	ReadSeq uint64 `json:"readSeq"`
	Cause   uint64 `json:"cause"`
}

// ConversationsRequest asks for User's conversation list as of at least stream sequence MinSeq
// (read-your-writes: the gateway passes the last seq it knows of). An instance behind MinSeq waits
// for its projection to catch up, up to the request's timeout.
type ConversationsRequest struct {
	User   string `json:"user"`
	MinSeq uint64 `json:"minSeq"`
}

// ConversationsReply answers a ConversationsRequest: Items most recent activity first, as of
// stream sequence Seq, or an error.
type ConversationsReply struct {
	Items   []ConversationItem `json:"items"`
	Seq     uint64             `json:"seq"`
	ErrCode ErrCode            `json:"errCode,omitempty"`
	ErrMsg  string             `json:"errMsg,omitempty"`
}

// UserProfile is the public part of an account record in UsersBucket (the record has more fields).
type UserProfile struct {
	User string `json:"user"`
	Name string `json:"name"`
}
