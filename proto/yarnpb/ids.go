package yarnpb

import (
	"fmt"
	"strconv"
	"strings"
)

// Identifiers use YARN's formats so users and tools recognise them:
//
//	application_<clusterTimestamp>_<seq4>
//	appattempt_<clusterTimestamp>_<seq4>_<attempt6>
//	container_e<epoch>_<clusterTimestamp>_<seq4>_<attempt2>_<seq6>

// AppID formats an application id.
func AppID(clusterTS int64, seq uint64) string {
	return fmt.Sprintf("application_%d_%04d", clusterTS, seq)
}

// digits reports whether s is 1 to 19 decimal digits: every number field of
// an id, so that no id can carry a path separator, a sign or a space.
func digits(s string) bool {
	if len(s) == 0 || len(s) > 19 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ParseAppID splits an application id into its cluster timestamp and
// sequence number.
func ParseAppID(id string) (ts int64, seq uint64, err error) {
	rest, ok := strings.CutPrefix(id, "application_")
	parts := strings.Split(rest, "_")
	if !ok || len(parts) != 2 || !digits(parts[0]) || !digits(parts[1]) {
		return 0, 0, fmt.Errorf("%q is not an application id (expected application_<timestamp>_<number>)", id)
	}
	ts, err1 := strconv.ParseInt(parts[0], 10, 64)
	seq, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%q is not an application id (expected application_<timestamp>_<number>)", id)
	}
	return ts, seq, nil
}

// AttemptID formats the id of an application's attempt number num.
func AttemptID(appID string, num int32) string {
	return fmt.Sprintf("appattempt_%s_%06d", strings.TrimPrefix(appID, "application_"), num)
}

// AppIDOfAttempt returns the application id an attempt id belongs to.
func AppIDOfAttempt(attemptID string) (string, error) {
	rest, ok := strings.CutPrefix(attemptID, "appattempt_")
	parts := strings.Split(rest, "_")
	if !ok || len(parts) != 3 || !digits(parts[0]) || !digits(parts[1]) || !digits(parts[2]) {
		return "", fmt.Errorf("%q is not an application attempt id (expected appattempt_<timestamp>_<number>_<attempt>)", attemptID)
	}
	return "application_" + parts[0] + "_" + parts[1], nil
}

// ContainerID formats a container id.
// It is on the scheduler's hot path, a call for every container placed,
// so it appends rather than formats; fmt's %02d and %06d are the format.
func ContainerID(epoch int64, appID string, attempt int32, seq int64) string {
	if epoch < 0 || attempt < 0 || seq < 0 {
		return fmt.Sprintf("container_e%02d_%s_%02d_%06d", epoch, strings.TrimPrefix(appID, "application_"), attempt, seq)
	}
	b := make([]byte, 0, 48)
	b = append(b, "container_e"...)
	b = appendPadded(b, epoch, 2)
	b = append(b, '_')
	b = append(b, strings.TrimPrefix(appID, "application_")...)
	b = append(b, '_')
	b = appendPadded(b, int64(attempt), 2)
	b = append(b, '_')
	b = appendPadded(b, seq, 6)
	return string(b)
}

// appendPadded appends v, not negative, in decimal with leading zeros to
// at least width digits.
func appendPadded(b []byte, v int64, width int) []byte {
	var d [20]byte
	n := strconv.AppendInt(d[:0], v, 10)
	for i := len(n); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, n...)
}

// AppIDOfContainer returns the application id a container id belongs to.
func AppIDOfContainer(containerID string) (string, error) {
	parts := strings.Split(containerID, "_")
	// container_e01_<ts>_<seq>_<attempt>_<seq>
	if len(parts) != 6 || parts[0] != "container" || !strings.HasPrefix(parts[1], "e") || !digits(parts[1][1:]) ||
		!digits(parts[2]) || !digits(parts[3]) || !digits(parts[4]) || !digits(parts[5]) {
		return "", fmt.Errorf("%q is not a container id (expected container_e<epoch>_<timestamp>_<app>_<attempt>_<number>)", containerID)
	}
	return "application_" + parts[2] + "_" + parts[3], nil
}

// ContainerSeq returns the trailing sequence number of a container or
// attempt id: 7 for container_e01_..._01_000007.
func ContainerSeq(id string) int64 {
	var seq int64
	mul := int64(1)
	for i := len(id) - 1; i >= 0 && id[i] >= '0' && id[i] <= '9'; i-- {
		seq += int64(id[i]-'0') * mul
		mul *= 10
	}
	return seq
}
