package propolis_test

import (
	"errors"
	"fmt"
	"strconv"

	propolis "github.com/propolis-mqtt/propolis/sdk/go"
)

// A counter kept in the extension's storage: every instance, and the
// next version after a hot reload, sees it. Outside the broker (this
// example runs natively) the host services answer ErrNotAvailable.
func ExamplePutStoredValue() {
	n := 0
	v, err := propolis.StoredValue("connects")
	switch {
	case err == nil:
		n, _ = strconv.Atoi(string(v))
	case errors.Is(err, propolis.ErrNotFound): // first time: start at 0
	default:
		fmt.Println("read:", err)
		return
	}
	if err := propolis.PutStoredValue("connects", []byte(strconv.Itoa(n+1))); err != nil {
		fmt.Println("write:", err)
	}
	// Output: read: propolis: NOT_AVAILABLE
}

// Paging through every key under a prefix, 100 at a time.
func ExampleStoredKeys() {
	total := 0
	for after := ""; ; {
		keys, more, err := propolis.StoredKeys("dev/", after, 100)
		if err != nil {
			fmt.Println("list:", err)
			return
		}
		total += len(keys)
		if !more {
			break
		}
		after = keys[len(keys)-1]
	}
	fmt.Println(total, "keys")
	// Output: list: propolis: NOT_AVAILABLE
}

// A tick that forgets stale entries. The manifest asks for it:
//
//	tick: 30s
//	services: [storage]
func ExampleExtension_tick() {
	ext := propolis.Extension{
		Tick: func() {
			keys, _, err := propolis.StoredKeys("stale/", "", 100)
			if err != nil {
				propolis.Warnf("sweep: %v", err)
				return
			}
			for _, k := range keys {
				_ = propolis.RemoveStoredValue(k)
			}
		},
	}
	_ = ext // propolis.Register(ext) from the extension's init function
}
