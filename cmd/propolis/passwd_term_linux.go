package main

import (
	"os"

	"golang.org/x/sys/unix"
)

func init() {
	stdinTerminal = func(f *os.File) bool {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		return err == nil
	}
	echoOff = func(f *os.File) (func(), error) {
		fd := int(f.Fd())
		old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return nil, err
		}
		quiet := *old
		quiet.Lflag &^= unix.ECHO
		quiet.Lflag |= unix.ICANON | unix.ISIG
		if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
			return nil, err
		}
		return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
	}
}
