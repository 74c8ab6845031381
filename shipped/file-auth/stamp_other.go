//go:build !wasip1

package main

import "os"

// fileID is 0, 0 outside Wasm (native unit tests): the modification time
// and size tell the tests' edits apart.
func fileID(os.FileInfo) (ino, ctime uint64) { return 0, 0 }
