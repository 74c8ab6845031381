package trace

import (
	"archive/zip"
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteZip writes the recordings ids (in that order, each once), or every
// recording, newest first, when ids is empty, to w as one zip archive: for each, <id>/meta.json (its
// Recording as List reports it) and its packet files <id>/NNNNNN.jsonl.
// A running recording is included up to its last packet so far.
//
// strip, when not nil, rewrites every packet line (given without its
// newline) before it goes into the archive, and a nil or empty result
// leaves the line out: StripUserProperties removes user properties for a
// reader not allowed to see them. Errors: ErrNotFound (before anything is
// written) naming the id, or the error reading a file or writing to w,
// after which the archive is incomplete. A Delete of a recording waits
// until WriteZip has read it; one deleted before WriteZip reached it is
// a note <id>/DELETED.txt in the archive.
func (r *Recorder) WriteZip(w io.Writer, ids []string, strip func(line []byte) []byte) error {
	var recs []*recording
	r.mu.Lock()
	if len(ids) == 0 {
		for _, s := range r.listLocked() {
			recs = append(recs, r.recs[s.ID])
		}
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		rc, ok := r.recs[id]
		if !ok {
			r.mu.Unlock()
			return fmt.Errorf("zip trace recording %q: %w", id, ErrNotFound)
		}
		recs = append(recs, rc)
	}
	r.mu.Unlock()

	zw := zip.NewWriter(w)
	for _, rc := range recs {
		if err := r.zipOne(zw, rc, strip); err != nil {
			return err
		}
	}
	return zw.Close()
}

// zipOne adds recording rc to zw, holding off its Delete meanwhile; one
// deleted before its turn is a note, <id>/DELETED.txt, saying so.
func (r *Recorder) zipOne(zw *zip.Writer, rc *recording, strip func([]byte) []byte) error {
	rc.zip.RLock()
	defer rc.zip.RUnlock()
	rc.mu.Lock()
	deleted, id := rc.deleted, rc.meta.ID
	rc.mu.Unlock()
	if deleted {
		nw, err := zw.Create(id + "/DELETED.txt")
		if err == nil {
			_, err = fmt.Fprintf(nw, "trace recording %s was deleted while this archive was being written\n", id)
		}
		return err
	}
	meta, files, err := rc.files()
	if err != nil {
		return fmt.Errorf("zip trace recording %q: %w", meta.ID, err)
	}
	if err := zipRecording(zw, rc.dir, meta, files, strip); err != nil {
		return fmt.Errorf("zip trace recording %q: %w", meta.ID, err)
	}
	return nil
}

// zipRecording adds one recording's meta.json and files to zw.
func zipRecording(zw *zip.Writer, dir string, meta Recording, files []fileInfo, strip func([]byte) []byte) error {
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	mw, err := zw.CreateHeader(&zip.FileHeader{Name: meta.ID + "/" + metaFile, Method: zip.Deflate, Modified: meta.StartedAt})
	if err != nil {
		return err
	}
	if _, err := mw.Write(append(b, '\n')); err != nil {
		return err
	}
	for _, fi := range files {
		if err := zipFile(zw, dir, meta, fi, strip); err != nil {
			return err
		}
	}
	return nil
}

// zipFile adds the first fi.size bytes of one packet file to zw, each line
// through strip when it is set.
func zipFile(zw *zip.Writer, dir string, meta Recording, fi fileInfo, strip func([]byte) []byte) error {
	f, err := os.Open(filepath.Join(dir, fi.name))
	if err != nil {
		return err
	}
	defer f.Close()
	fw, err := zw.CreateHeader(&zip.FileHeader{Name: meta.ID + "/" + fi.name, Method: zip.Deflate, Modified: meta.StartedAt})
	if err != nil {
		return err
	}
	src := io.LimitReader(f, fi.size)
	if strip == nil {
		_, err := io.Copy(fw, src)
		return err
	}
	br := bufio.NewReaderSize(src, writeBuffer)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			if out := strip(line[:len(line)-1]); len(out) > 0 {
				if _, werr := fw.Write(append(out, '\n')); werr != nil {
					return werr
				}
			}
		}
		if err == io.EOF {
			return nil // a last line without its newline is not whole: left out
		}
		if err != nil {
			return err
		}
	}
}
