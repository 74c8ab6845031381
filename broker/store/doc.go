// Package store is the broker's own persistent store: sessions,
// subscriptions, in-flight messages, retained messages, pending publishes,
// session attributes and extension data, kept in a pebble database in one
// data folder.
//
// The broker opens it once with Open, restores its state with Load, writes
// through the Put and Delete methods as clients come and go, and closes it
// with Close at shutdown. The package does not depend on the MQTT server
// library; it has its own record types. All methods are safe for concurrent
// use.
//
// # Key layout
//
// Every key starts with one byte naming the record kind and a NUL; the
// fields of the key follow, separated by NUL:
//
//	s NUL <client id>                         session
//	u NUL <client id> NUL <filter>            subscription
//	i NUL <client id> NUL <packet id: 2 bytes big-endian>   in-flight message
//	r NUL <topic>                             retained message
//	p NUL <seq: 8 bytes big-endian>           pending publish
//	a NUL <client id> NUL <key>               session attribute
//	x NUL <extension id> NUL <key>            extension data
//
// MQTT forbids U+0000 in client ids, topics and filters, and the store
// refuses such names (and extension ids) with ErrInvalidName, so NUL can
// only ever be a separator. That makes the records of one client a
// contiguous range, "u NUL <client id> NUL" up to (not including)
// "u NUL <client id> \x01", which never holds a record of a client whose id
// merely starts with the same bytes ("a" and "ab"). DeleteSession removes a
// session with one point delete and three range deletes (subscriptions,
// in-flight messages, attributes) in one atomic batch. Big-endian numbers
// make the keys of in-flight messages sort by packet id and those of pending
// publishes by sequence number. Attribute and extension keys are arbitrary
// strings.
//
// A session attribute exists only beside its session record: an attribute
// write fails with ErrNoSession when the record is missing, and it and
// DeleteSession take the same per-client lock, so none outlives its
// session (see attributes.go).
//
// # Record encoding
//
// Values are a compact binary encoding of the record, written by hand (no
// reflection, no JSON) into buffers reused through a sync.Pool, so the
// hot-path writes (PutInflight, DeleteInflight, PutPending, DeletePending)
// allocate nothing in steady state. Each value opens with a record-version
// byte (now 1) and a flags byte holding the record's booleans; then come
// the fields in a fixed order: unsigned integers as uvarints, signed ones
// as zig-zag varints, strings as a uvarint length and the bytes, byte
// slices and lists as a uvarint of length+1 (0 means nil, so nil and empty
// stay apart) and their contents. A session's will follows the session
// fields when the flags say there is one. An attribute holds its time
// (Unix nanoseconds, zig-zag), client id, key and value. Records keep their
// own key fields (client id, packet id, topic, key) too, so a value decodes
// alone.
//
// Later builds may append fields and bump the record version; a decoder
// reads the fields it knows and ignores the rest, and treats a record that
// ends before its known fields as corrupt (Load then fails with ErrCorrupt
// naming the key).
//
// # Durability
//
// Options.Durability decides when writes reach the disk. Each write method
// takes a durable flag: in DurabilitySync mode a durable write is committed
// with pebble.Sync and returns only after the write-ahead log was fsynced;
// pebble's commit pipeline lets concurrent callers share one fsync (group
// commit), so many clients writing at once cost far fewer fsyncs than
// writes. Non-durable writes in sync mode, and all writes in the other
// modes, use pebble.NoSync. DurabilityPeriodic adds a goroutine that syncs
// the log every Options.FlushInterval (100ms by default), bounding what a
// power loss can take. DurabilityNone leaves it to the operating system; a
// crash of the process alone loses nothing pebble already wrote. In every
// mode Close syncs the log before closing, so a clean stop loses nothing.
//
// # Free space
//
// Pebble cannot survive a failed write of its write-ahead log: it calls
// Logger.Fatalf, and a folder left full may not even open again (replaying
// the log writes a new table). So writes must not reach a full disk. A
// free-space guard (space.go) reads the folder's free space with statfs at
// most every 100ms or every MiB admitted, subtracting what it admitted in
// between, and refuses a write with ErrDiskFull, writing nothing, when it
// would leave less than Options.MinFreeSpace (64 MiB by default) free:
//
//   - new work (PutPending, PutSubscription, PutRetained, attribute and
//     extension writes) must leave the whole reserve;
//   - critical writes (PutSession, and PutInflight, the queued copies of a
//     message already acknowledged to its publisher) may use half of it;
//   - deletes are never refused: they are what frees space.
//
// The first refusal of new work logs one Warn line and sets the full state
// (Space); a reading above the reserve plus an eighth leaves it, with one
// Info line. The other half of the reserve stays for pebble itself: a new
// log preallocated to 110% of the 16 MiB memtable, the memtable's flush and
// compactions, which need room before they delete their inputs.
//
// Open refuses a folder it cannot open for lack of space with one line
// naming the folder, its free space and the reserve (wrapping ErrDiskFull),
// and a fatal error inside pebble during Open is an error, not a crash. A
// folder that opens below the reserve starts in the full state. A fatal
// error after Open (an ENOSPC despite the guard, say another program filled
// the disk) is logged in one line and the process exits with status 2:
// pebble's commit pipeline cannot continue. Nothing acknowledged is lost
// then: acknowledgements follow their (synced) writes, and the next start
// replays them.
//
// # Format versions
//
// The data folder holds, beside pebble's files, a text file FORMAT with
// the line "propolis-data N". FormatVersion (3) is the format this build
// writes. Open reads FORMAT before touching pebble:
//
//   - no FORMAT in a missing or empty folder (empty but for ClusterDir,
//     which a cluster node creates before the store opens): create the folder, write
//     FORMAT (temp file, fsync, rename, fsync of the folder) and start an
//     empty store;
//   - no FORMAT in a folder that holds anything: ErrNotDataDir;
//   - FORMAT above FormatVersion: ErrNewerFormat, naming both versions;
//   - FORMAT unreadable: ErrCorrupt.
//
// It then locks the folder and opens pebble read-only once, which checks the
// MANIFEST and replays the log without writing; a failure there is
// ErrCorrupt naming the folder. It checks the write-ahead logs (below) and
// removes the clean-shutdown marker. Only then does it open pebble
// read-write. Every refusal leaves the folder's files exactly as they were.
//
// Format 1 is the layout of earlier builds: JSON values under keys CL_,
// SUB_, IFM_ and RET_ (see migrate_v1.go). Format 2 is the layout above
// without session attributes. Format 3 adds them; its step rewrites nothing
// (see migrate_v2.go), and exists so that a format-2 build, which would
// leave attributes behind when it deletes a session, refuses the folder.
//
// The rule: a change an older build would read or write wrongly, even by
// ignoring it, bumps the format; appending fields to a record (above) does
// not.
//
// # Write-ahead log damage
//
// Pebble v1.1.5 replays its newest write-ahead log up to the first record
// it cannot read (a bad checksum, a chunk cut short) and silently drops the
// rest, taking it for the torn tail of a crash; only its Logger says where
// it stopped. A damaged log would lose acknowledged messages without a
// word. So Open, after the read-only replay, checks each log pebble
// replayed (the Logger line names them, see wal.go):
//
//   - scanWAL reads it with pebble's record reader as the replay does, then
//     looks past the first invalid record: byte by byte in the rest of its
//     32 KiB block for a chunk of this log with a valid checksum, then block
//     by block. A valid record there is damage: an interrupted append
//     leaves nothing readable after it. A truncation leaves nothing to
//     find, which the marker below catches.
//   - After a clean shutdown the folder holds CLEAN-SHUTDOWN: its first
//     line "propolis-clean-shutdown 1", then one line per log, "NNNNNN.log
//     OFFSET", the offset where the log's records ended. A log whose records
//     now end earlier (truncated, overwritten) is damage, and so is a
//     missing log that was the newest or is newer than one pebble replays
//     (older listed logs may be obsolete, kept for recycling).
//   - Without the marker the last stop was a crash. A log ending in a torn
//     record is expected; Open logs it at Warn (file, offset, size) and
//     pebble drops it. With sync durability it holds nothing acknowledged.
//
// Damage is refused with ErrDamagedWAL (which matches ErrCorrupt), one
// line naming the log, the offset where replay stops and why. With
// Options.Repair Open copies the store's files to <Dir>.damaged-<UTC time>
// instead, logs where and what will be dropped at Warn, and opens.
//
// Close writes the marker after pebble has closed (and synced) every log:
// it scans the logs for their ends and writes CLEAN-SHUTDOWN.tmp, fsyncs
// it, renames it and fsyncs the folder. Open removes it (and fsyncs the
// folder) after its checks, just before pebble opens read-write and starts
// appending. A crash at any point is safe:
//
//   - before Close's rename: no marker, so the next Open checks as after a
//     crash, which is weaker but right, since the logs are whole;
//   - between Open's removal and the read-write open: the same;
//   - when the removal did not reach the disk, or a build that knows
//     nothing of the marker ran the folder since: pebble creates a new log
//     at every read-write open, so the marker does not list every replayed
//     log; Open logs that at Warn and checks as after a crash.
//
// A refused Open leaves the marker, so the verdict does not change from
// one attempt to the next.
//
// # Migration
//
// A folder with an older FORMAT is migrated on Open, one version at a time,
// by the steps in the migrations table (from-version to function; a new
// format adds one entry). Each step runs:
//
//  1. Back up: pebble's Checkpoint copies the database (hard links for
//     tables) into <dir>/migration-backup-v<from>.tmp, which is then renamed
//     to migration-backup-v<from> and the folder fsynced. If that backup is
//     already there, this is a retry and Open has just restored from it.
//  2. Convert: the records are rewritten in batches of about 1000; each
//     batch deletes the old keys it converted and sets the new ones, so it
//     applies whole or not at all.
//  3. Sync the write-ahead log.
//  4. Write FORMAT with the new version (temp file, fsync, rename, fsync).
//     This is the commit point.
//  5. Remove the backup and fsync the folder, then log "data folder
//     migrated" at Info with from, to and the number of records.
//
// A crash at any point loses nothing:
//
//   - during step 1: FORMAT is old and the live files untouched; a
//     half-written ".tmp" checkpoint is removed and the step starts over;
//   - during steps 2 and 3, or before step 4's rename: FORMAT is old and a
//     backup exists, so the live files may be half converted. Open validates
//     the backup, deletes the live pebble files, copies the backup's files
//     back (copies, not links, since pebble appends to some of them) and
//     migrates again. A crash during that restore leaves the backup in
//     place, so the next Open restores again from the start;
//   - after step 4: FORMAT is new and the conversion complete; Open removes
//     the leftover backup.
package store
