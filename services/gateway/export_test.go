package gateway

// SetAfterBoundary installs f to run each time a history read has taken the stream's first seq,
// before it reads the stream; nil removes it.
func SetAfterBoundary(gw *Gateway, f func()) {
	if f == nil {
		gw.testAfterBoundary.Store(nil)
		return
	}
	gw.testAfterBoundary.Store(&f)
}

// SetArchiveConvsPerRequest sets the most conversations one archive request names; it returns
// the previous value.
func SetArchiveConvsPerRequest(n int) int {
	return int(archiveConvsPerRequest.Swap(int64(n)))
}

// SetRecentLogOff makes gateways started from now on read everything from the stream (true), or
// keep the recent past in memory as configured (false); it returns the previous setting.
func SetRecentLogOff(off bool) bool {
	return recentLogOff.Swap(off)
}

// SetDirectReadMaxSubjects sets the most filter subjects a log read takes by direct get (0: every
// read uses a consumer); it returns the previous value.
func SetDirectReadMaxSubjects(n int) int {
	return int(directReadMaxSubjects.Swap(int64(n)))
}
