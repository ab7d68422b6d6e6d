package gateway_test

import (
	"testing"

	"github.com/eventchat/chat/services/gateway"
)

// TestLogReadsThroughConsumers runs the sync and history tests again with every log read, and the
// listing of a user's conversations, on a consumer: the paths of users with many conversations
// (the default reads a few conversations, and lists up to 1,024, by direct get). The other tests
// mostly read the recent past from the gateway's memory (recent.go).
func TestLogReadsThroughConsumers(t *testing.T) {
	prev := gateway.SetDirectReadMaxSubjects(0)
	t.Cleanup(func() { gateway.SetDirectReadMaxSubjects(prev) })
	runLogReadTests(t)
}

// The same tests with the reads by direct get, none from the recent past in memory.
func TestLogReadsThroughDirectGets(t *testing.T) {
	runLogReadTests(t)
}

// runLogReadTests runs the sync and history tests with the gateway's recent log off: every read
// goes to the stream.
func runLogReadTests(t *testing.T) {
	prevOff := gateway.SetRecentLogOff(true)
	t.Cleanup(func() { gateway.SetRecentLogOff(prevOff) })
	for name, test := range map[string]func(*testing.T){
		"SyncResumesExactlyAfterCursor":         TestSyncResumesExactlyAfterCursor,
		"SyncWhileLiveTrafficFlows":             TestSyncWhileLiveTrafficFlows,
		"ChangesLiveInSyncAndHistory":           TestChangesReachEveryMemberLiveInSyncAndHistory,
		"History":                               TestHistory,
		"HistoryPagingAcrossInterleavedTraffic": TestHistoryPagingAcrossInterleavedTraffic,
		"HistoryAcrossTheArchiveBoundary":       TestHistoryAcrossTheArchiveBoundary,
		"SyncFromTheArchive":                    TestSyncFromTheArchive,
	} {
		t.Run(name, test)
	}
}
