package persistence

import (
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

const (
	// walFillStep is how much of a WAL walFillFS writes with zeros at a
	// time, ahead of the records.
	walFillStep = 8 << 20
	// walFillAhead: a write that would come within this much of the
	// zeroed end first zeroes the next walFillStep.
	walFillAhead = 1 << 20
	// walFillChunk bounds one zero write.
	walFillChunk = 256 << 10
)

var walZeros = make([]byte, walFillChunk)

// walFillFS is the default file system except for the WAL (of the grab
// and the order store: openDB), whose space it writes with zeros ahead of the records (walFillStep at a
// time) instead of only reserving it (Pebble's fallocate, which keeps the
// file's size). Pebble then writes its records over written blocks inside
// the file's size, and the fdatasync behind every 201 flushes data alone:
// appending, or writing a reserved block for the first time, also makes
// it commit the file system's journal (the size, the extent), about a
// third of each sync here. A zeroed tail reads as the end of the log, as a
// reserved one does (Pebble's reader checks that nothing but zeros
// follows), so recovery is unchanged.
type walFillFS struct{ vfs.FS }

func isWAL(name string) bool { return strings.HasSuffix(name, ".log") }

func (fs walFillFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	if err != nil || !isWAL(name) {
		return f, err
	}
	return &walFillFile{File: f}, nil
}

// ReuseForWrite is a recycled WAL: written up to its old size already.
func (fs walFillFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	if err != nil || !isWAL(newname) {
		return f, err
	}
	st, err := f.Stat()
	if err != nil {
		return &walFillFile{File: f, stopped: true}, nil // fill nothing
	}
	return &walFillFile{File: f, filled: st.Size()}, nil
}

// walFillFile is a WAL being written (sequentially, by Pebble's one log
// writer) with zeros ahead of its records.
type walFillFile struct {
	vfs.File
	off     int64 // bytes written by Write
	filled  int64 // zeros (or old records) up to here
	stopped bool  // fill no more
}

func (f *walFillFile) Write(p []byte) (int, error) {
	if end := f.off + int64(len(p)) + walFillAhead; !f.stopped && end > f.filled {
		f.fill(end)
	}
	n, err := f.File.Write(p)
	f.off += int64(n)
	return n, err
}

// fill zeroes from the filled end in walFillStep steps past to. It is best
// effort: a failed zero write (a full disk) stops filling, and Pebble's
// writes go on as appends.
func (f *walFillFile) fill(to int64) {
	for f.filled < to {
		end := f.filled + walFillStep
		for at := f.filled; at < end; at += walFillChunk {
			if _, err := f.File.WriteAt(walZeros, at); err != nil {
				f.stopped = true
				return
			}
		}
		f.filled = end
	}
}
