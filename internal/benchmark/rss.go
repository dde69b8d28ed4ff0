package benchmark

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// memoryUsage is a process's resident set size, read from
// /proc/<pid>/status (Linux only).
type memoryUsage struct {
	// Peak is VmHWM, the largest resident set size the process has had.
	Peak int64
	// Current is VmRSS, the resident set size when it was read.
	Current int64
}

// findChildByExecutable returns the id of the child of parent whose
// executable is path. It looks only at direct children, so it never
// matches a process this benchmark did not start.
func findChildByExecutable(parent int, path string) (int, error) {
	absolute, err := filepath.Abs(path)
	if err != nil {
		return 0, err
	}
	want, err := filepath.EvalSymlinks(absolute)
	if err != nil {
		return 0, err
	}

	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("listing processes: %w", err)
	}
	var found []int
	for _, entry := range entries {
		pid, err := strconv.Atoi(entry.Name())
		if err != nil {
			continue
		}
		if ppid, err := parentOf(pid); err != nil || ppid != parent {
			continue
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && exe == want {
			found = append(found, pid)
		}
	}

	switch len(found) {
	case 0:
		return 0, fmt.Errorf("no child process of pid %d runs %s", parent, want)
	case 1:
		return found[0], nil
	default:
		return 0, fmt.Errorf("%d child processes of pid %d run %s, expected one multiplexed plugin process",
			len(found), parent, want)
	}
}

// parentOf returns the parent process id from /proc/<pid>/stat.
func parentOf(pid int) (int, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name in parentheses may contain spaces, so the fields
	// are counted from the last closing parenthesis: state, then ppid.
	stat := string(raw)
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("unexpected format of /proc/%d/stat", pid)
	}
	fields := strings.Fields(stat[end+1:])
	if len(fields) < 2 {
		return 0, fmt.Errorf("unexpected format of /proc/%d/stat", pid)
	}
	return strconv.Atoi(fields[1])
}

// readMemoryUsage reads VmHWM and VmRSS of pid.
func readMemoryUsage(pid int) (memoryUsage, error) {
	file, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memoryUsage{}, err
	}
	defer file.Close()

	var usage memoryUsage
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		name, value, ok := strings.Cut(scanner.Text(), ":")
		if !ok {
			continue
		}
		switch name {
		case "VmHWM":
			usage.Peak, err = parseKiB(value)
		case "VmRSS":
			usage.Current, err = parseKiB(value)
		}
		if err != nil {
			return memoryUsage{}, fmt.Errorf("/proc/%d/status %s: %w", pid, name, err)
		}
	}
	if err := scanner.Err(); err != nil {
		return memoryUsage{}, err
	}
	if usage.Peak == 0 || usage.Current == 0 {
		return memoryUsage{}, fmt.Errorf("/proc/%d/status has no VmHWM or VmRSS", pid)
	}
	return usage, nil
}

// parseKiB parses a value such as "  23456 kB" into bytes.
func parseKiB(value string) (int64, error) {
	number, unit, _ := strings.Cut(strings.TrimSpace(value), " ")
	if unit != "kB" {
		return 0, fmt.Errorf("unexpected unit in %q", value)
	}
	kib, err := strconv.ParseInt(number, 10, 64)
	if err != nil {
		return 0, err
	}
	return kib * 1024, nil
}
