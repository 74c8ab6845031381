package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/propolis-mqtt/propolis/internal/fsutil"
	"github.com/propolis-mqtt/propolis/passwd"
)

// passwdCommand is "propolis passwd", the file-auth extension's users file
// editor (shipped/file-auth/README.md).
func passwdCommand() *command {
	return &command{
		name:    "passwd",
		arg:     "FILE USER [PASSWORD]",
		summary: "add, change or delete a user of a password file (file-auth's, or admin.users_file)",
		about: `Sets the password of USER in FILE, adding the user if new, or with -D
deletes it. FILE is the users file of the file-auth extension
(extensions/file-auth/passwd) or the admin API's admin.users_file (a user
there also needs an admin.users entry with its roles). The password is read from the terminal twice, without echo, or
as one line from standard input when that is not a terminal:

  printf '%s\n' "$PASSWORD" | propolis passwd extensions/file-auth/passwd alice

It is stored as a salted PBKDF2-SHA-512 hash. The file is rewritten
atomically (a temporary file renamed over it) with its comments, order and
owner kept, readable by its owner only; a symbolic link is written
through. A running broker uses the new file within about 2 s after it is
written, both file-auth's and admin.users_file (a user whose password changed
is logged out of the control center). A file with a bad
line is not changed: fix the line the error names first. Two passwd
commands on one file take turns (a lock on its folder).

-b takes the password as the PASSWORD argument instead. It is then visible
to other users of the machine (in the process list) and kept in the shell's
history: use it only where neither matters, such as a throwaway test.`,
		flags: passwdFlags,
	}
}

// deadlineIterations is the largest iteration count whose check (0.1 to
// 0.15 s per 10,000 inside the broker's Wasm runtime) stays inside
// file-auth's default authenticate deadline of 2 s on a busy machine;
// passwd warns above it.
const deadlineIterations = 100_000

// passwdFlags declares the flags of passwd and returns the function
// running it.
func passwdFlags(fs *flag.FlagSet) func(string, io.Writer, io.Writer) error {
	create := fs.Bool("c", false, "create FILE, which must not exist yet")
	del := fs.Bool("D", false, "delete USER from FILE")
	batch := fs.Bool("b", false, "take the password from the PASSWORD argument (visible to other users: see above)")
	iter := fs.Int("iterations", passwd.DefaultIterations, "PBKDF2 iterations of the new hash (`N`, from 1000 to 10000000)")
	return func(arg string, stdout, stderr io.Writer) error {
		args := strings.Split(arg, "\x00")
		file, user := args[0], args[1]
		switch {
		case *del && (*batch || *create):
			return usagef("passwd", "-D takes neither -b nor -c")
		case *batch && len(args) < 3:
			return usagef("passwd", "missing password (-b takes it as the third argument)")
		case !*batch && len(args) > 2:
			return usagef("passwd", "unexpected argument %q (a password argument needs -b)", args[2])
		}
		if err := passwd.CheckUser(user); err != nil {
			return fmt.Errorf("passwd: %w", err)
		}
		// A symbolic link is written through, to the file it names:
		// renaming over the link would replace it with a plain file.
		if fi, err := os.Lstat(file); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			target, err := filepath.EvalSymlinks(file)
			if err != nil {
				return fmt.Errorf("passwd: %s is a symbolic link to a file that cannot be reached: %w", file, err)
			}
			file = target
		}
		if !*del && *iter > deadlineIterations {
			fmt.Fprintf(stderr, "passwd: warning: --iterations %d: one check of this password takes about %.1f to %.1f s of CPU inside the broker, past file-auth's default limits.authenticate_deadline (2 s), which refuses the client (0x80): raise the deadline in its manifest, or keep to %d iterations or fewer\n",
				*iter, float64(*iter)/1e5, float64(*iter)*1.5/1e5, deadlineIterations)
		}
		op := passwdOp{file: file, user: user, create: *create, delete: *del, iterations: *iter}
		unlock, err := lockFolder(file)
		if err != nil {
			return fmt.Errorf("passwd: %w", err)
		}
		defer unlock()
		lines, old, err := op.load() // before asking for a password
		if err != nil {
			return fmt.Errorf("passwd: %w", err)
		}
		if !*del {
			var pw []byte
			var err error
			if *batch {
				pw = []byte(args[2])
			} else if pw, err = readPassword(passwdStdin, stderr); err != nil {
				return fmt.Errorf("passwd: %w", err)
			}
			if len(pw) == 0 {
				return errors.New("passwd: empty password")
			}
			op.password = pw
		}
		msg, err := op.apply(lines, old)
		if err != nil {
			return fmt.Errorf("passwd: %w", err)
		}
		fmt.Fprintln(stdout, msg)
		if old != nil && old.Mode().Perm()&0o077 != 0 {
			fmt.Fprintf(stderr, "passwd: %s was readable or writable by others (%#o): now %#o\n", op.file, old.Mode().Perm(), old.Mode().Perm()&^0o077)
		}
		return nil
	}
}

// passwdOp is one change to a users file.
type passwdOp struct {
	file, user     string
	password       []byte // nil when deleting
	create, delete bool
	iterations     int
}

// load reads and parses the file whole (none with -c), and returns its
// lines and what it was (nil with -c: its permissions and owner are
// kept); a bad file is an error naming its lines, and is left as it is.
func (op passwdOp) load() (lines []passwd.Line, old fs.FileInfo, err error) {
	data, err := os.ReadFile(op.file)
	switch {
	case op.create && err == nil:
		return nil, nil, fmt.Errorf("%s already exists (-c creates a new file; leave it out to change this one)", op.file)
	case op.create && errors.Is(err, fs.ErrNotExist):
		return nil, nil, nil
	case err != nil && errors.Is(err, fs.ErrNotExist):
		return nil, nil, fmt.Errorf("%s does not exist (-c creates it)", op.file)
	case err != nil:
		return nil, nil, err
	}
	if lines, _, err = passwd.ParseFile(op.file, data); err != nil {
		return nil, nil, fmt.Errorf("%s not changed:\n%w", op.file, err)
	}
	if old, err = os.Stat(op.file); err != nil {
		return nil, nil, err
	}
	return lines, old, nil
}

// apply makes the change to the file's lines, writes them and says what
// it did.
func (op passwdOp) apply(lines []passwd.Line, old fs.FileInfo) (string, error) {
	at := -1
	for i, l := range lines {
		if l.User == op.user {
			at = i
		}
	}
	var what string
	if op.delete {
		if at < 0 {
			return "", fmt.Errorf("%s has no user %q", op.file, op.user)
		}
		lines = append(lines[:at], lines[at+1:]...)
		what = "deleted"
		// file-auth refuses an empty users file in place of one with
		// users (it takes it for one cut short): removing the last user
		// leaves a line saying so.
		if !slices.ContainsFunc(lines, func(l passwd.Line) bool { return strings.TrimSpace(l.Text) != "" }) {
			lines = []passwd.Line{{Text: "# no users (propolis passwd -D removed the last)"}}
		}
	} else {
		h, err := passwd.New(op.password, op.iterations)
		if err != nil {
			return "", err
		}
		l := passwd.Line{User: op.user, Hash: h, Text: op.user + ":" + h}
		if at < 0 {
			lines = append(lines, l)
			what = "added"
		} else {
			lines[at] = l
			what = "changed"
		}
	}
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	if err := writeAtomic(op.file, b.Bytes(), old); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: user %q %s", op.file, op.user, what), nil
}

// writeAtomic replaces path with data: a temporary file in the same
// folder, synced, then renamed over it, then the folder synced, so that a
// reader (the extension) sees the old file or the new one, never a part,
// and a crash loses neither. The new file keeps old's owner (when run as
// root) and permissions, less any for group and others: it holds password
// hashes (a new file, old nil, is 0600).
func writeAtomic(path string, data []byte, old fs.FileInfo) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename, there is nothing to remove
	mode := fs.FileMode(0o600)
	if old != nil {
		mode = old.Mode().Perm() &^ 0o077
		if err := keepOwner(f, old); err != nil {
			f.Close()
			return fmt.Errorf("keep the owner of %s: %w", path, err)
		}
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	_ = fsutil.SyncDir(dir) // best effort: not every system syncs a folder
	return nil
}

// passwdStdin is where passwd reads a password; tests replace it.
var passwdStdin = os.Stdin

// stdinTerminal reports whether f is a terminal; passwd_term_*.go set it
// with the functions that turn echo off and on.
var (
	stdinTerminal func(f *os.File) bool
	echoOff       func(f *os.File) (restore func(), err error)
)

// readPassword reads the new password: twice without echo from a
// terminal (prompts on stderr), else one line from in.
func readPassword(in *os.File, stderr io.Writer) ([]byte, error) {
	if !stdinTerminal(in) {
		return readLine(bufio.NewReader(in))
	}
	restore, err := echoOff(in)
	if err != nil {
		return nil, fmt.Errorf("turn terminal echo off: %w", err)
	}
	defer restore()
	r := bufio.NewReader(in)
	fmt.Fprint(stderr, "Password: ")
	first, err := readLine(r)
	fmt.Fprintln(stderr)
	if err != nil {
		return nil, err
	}
	fmt.Fprint(stderr, "Reenter password: ")
	second, err := readLine(r)
	fmt.Fprintln(stderr)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(first, second) {
		return nil, errors.New("the passwords do not match")
	}
	return first, nil
}

// readLine reads one line without its line ending; a last line without
// one counts, nothing at all is an error.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadBytes('\n')
	if err != nil && (err != io.EOF || len(line) == 0) {
		if err == io.EOF {
			return nil, errors.New("no password on standard input")
		}
		return nil, fmt.Errorf("read password: %w", err)
	}
	return bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r")), nil
}
