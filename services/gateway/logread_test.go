package gateway_test

import (
	"testing"

	"github.com/eventchat/chat/services/gateway"
)

// TestLogReadsThroughConsumers runs the sync and history tests again with every log read, and the
// listing of a user's conversations, on a consumer: the paths of users with many conversations
// (the default reads a few conversations, and lists up to 1,024, by direct get, which the other
// tests cover).
func TestLogReadsThroughConsumers(t *testing.T) {
	prev := gateway.SetDirectReadMaxSubjects(0)
	t.Cleanup(func() { gateway.SetDirectReadMaxSubjects(prev) })
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
