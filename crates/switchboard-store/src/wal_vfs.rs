//! A SQLite VFS shim for the writer's connection that gathers a commit's WAL frames into one
//! write.
//!
//! SQLite writes each WAL frame as two `pwrite`s (its 24-byte header, then the page), so a
//! commit of 25 pages costs 50 system calls, and each 4 KiB page written at an offset 24 bytes
//! past a boundary touches two page-cache folios. This shim wraps the default (`unix`) VFS:
//! writes to a file opened as a WAL that continue the previous one are appended to a buffer
//! instead, and the buffer goes to the file in one write before anything that must see it: a
//! sync, a read, the file's size, a truncate, a file control, a write elsewhere, a close, or
//! the buffer reaching [`MAX_BUFFER`]. Every other file, and every other method, is passed
//! through as is.
//!
//! The file receives the same writes in the same order as without the shim, only later and
//! gathered: a write that does not continue the buffer flushes it first, and so does every
//! method that could observe the file.
//!
//! **Why this is safe, and when it would not be.** Nothing outside this connection sees the
//! WAL's new frames until the commit makes them part of the WAL index, and with
//! `synchronous=FULL` (which the writer's connection always sets: `schema::durable`) SQLite
//! syncs the WAL *before* it appends the commit's frames to the index, so the buffer is in the
//! file by then. The connection's own reads of the WAL flush it first. Under
//! `synchronous=NORMAL` the commit would publish frames without a sync, and other
//! connections would read what is not in the file yet, so the writer refuses to run with less
//! than FULL (`schema::open_writer` checks it). A write that is buffered and lost to a crash
//! was never synced, so it was never part of a commit: recovery ignores such frames either
//! way. Readers and the checkpointer use the default VFS.

#![allow(unsafe_code)] // FFI: the VFS and file method tables SQLite calls into.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name the writer's connection opens its database with.
pub(crate) const NAME: &CStr = c"switchboard-wal";

/// A buffer this large goes to the file before it grows further (a big transaction, such as a
/// migration, writes many frames; a commit of the steady load is about 100 KiB).
const MAX_BUFFER: usize = 1 << 20;

/// The most the `unix` VFS writes in one call: its `seekAndWriteFd` masks a write's length
/// with `0x1ffff`, so a longer one would be cut short (to nothing at a multiple of 128 KiB,
/// which it reports as a full disk). Flushes go in pieces of this size, 31 pages.
const MAX_WRITE: usize = 0x1f000;

/// Registers the VFS once per process (not as the default). Returns SQLite's error code if
/// the default VFS is missing or registration failed.
pub(crate) fn register() -> Result<(), c_int> {
    static REGISTERED: OnceLock<Result<(), c_int>> = OnceLock::new();
    // SAFETY: runs once; the VFS structure is leaked, so it lives as long as SQLite uses it.
    *REGISTERED.get_or_init(|| unsafe { register_once() })
}

unsafe fn register_once() -> Result<(), c_int> {
    // SAFETY: a null name asks for the default VFS, which SQLite initializes on this call.
    let real = unsafe { ffi::sqlite3_vfs_find(ptr::null()) };
    if real.is_null() {
        return Err(ffi::SQLITE_ERROR);
    }
    // SAFETY: `real` is a registered VFS; SQLite never frees one.
    let mut vfs = unsafe { *real };
    vfs.iVersion = vfs.iVersion.min(2); // no system-call overrides through the shim
    vfs.szOsFile += size_of::<ShimFile>() as c_int;
    vfs.pNext = ptr::null_mut();
    vfs.zName = NAME.as_ptr();
    vfs.pAppData = real.cast::<c_void>();
    vfs.xOpen = Some(open);
    vfs.xSetSystemCall = None;
    vfs.xGetSystemCall = None;
    vfs.xNextSystemCall = None;
    // The other methods are the default VFS's own; `unix` ignores the VFS pointer they get
    // except in `xOpen`, which the shim calls with the real one.
    let vfs = Box::leak(Box::new(vfs));
    // SAFETY: `vfs` is a complete, leaked VFS structure.
    match unsafe { ffi::sqlite3_vfs_register(vfs, 0) } {
        ffi::SQLITE_OK => Ok(()),
        rc => Err(rc),
    }
}

/// The file SQLite allocates `szOsFile` bytes for: this header, then the real VFS's file.
#[repr(C)]
struct ShimFile {
    base: ffi::sqlite3_file,
    /// The WAL's pending write, or null for every other file.
    wal: *mut Pending,
}

/// Bytes written at `offset..offset + data.len()` and not yet handed to the file.
struct Pending {
    offset: i64,
    data: Vec<u8>,
    /// Writes handed to the real file so far (what the tests count).
    writes: u64,
}

/// The real VFS's file, right after the shim's header (8-byte aligned: the header is).
unsafe fn inner(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: SQLite allocated `szOsFile` bytes, header plus the real file.
    unsafe { file.cast::<u8>().add(size_of::<ShimFile>()).cast() }
}

/// The real file's method table.
unsafe fn methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: called only on a file the real VFS opened successfully.
    unsafe { &*(*file).pMethods }
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes our VFS (whose app data is the real one) and `szOsFile` bytes.
    unsafe {
        let real = (*vfs).pAppData.cast::<ffi::sqlite3_vfs>();
        let shim = file.cast::<ShimFile>();
        ptr::write(
            shim,
            ShimFile { base: ffi::sqlite3_file { pMethods: ptr::null() }, wal: ptr::null_mut() },
        );
        let inner = inner(file);
        (*inner).pMethods = ptr::null();
        let Some(real_open) = (*real).xOpen else { return ffi::SQLITE_ERROR };
        let rc = real_open(real, name, inner, flags, out_flags);
        if rc == ffi::SQLITE_OK && flags & ffi::SQLITE_OPEN_WAL != 0 {
            (*shim).wal =
                Box::into_raw(Box::new(Pending { offset: 0, data: Vec::new(), writes: 0 }));
        }
        // A failed open that set the real file's methods must still be closed (SQLite's
        // rule): SQLite calls the shim's close when the shim's methods are set.
        if rc == ffi::SQLITE_OK || !(*inner).pMethods.is_null() {
            (*shim).base.pMethods = &METHODS;
        }
        rc
    }
}

/// Hands the pending write, if any, to the file; the buffer is empty afterwards either way.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` is a shim file whose real file is open.
    unsafe {
        let wal = (*file.cast::<ShimFile>()).wal;
        if wal.is_null() || (*wal).data.is_empty() {
            return ffi::SQLITE_OK;
        }
        let pending = &mut *wal;
        let inner = inner(file);
        let Some(write) = methods(inner).xWrite else { return ffi::SQLITE_IOERR_WRITE };
        let mut rc = ffi::SQLITE_OK;
        let mut offset = pending.offset;
        for chunk in pending.data.chunks(MAX_WRITE) {
            // At most MAX_WRITE bytes: fits a c_int.
            rc = write(inner, chunk.as_ptr().cast(), chunk.len() as c_int, offset);
            pending.writes += 1;
            if rc != ffi::SQLITE_OK {
                break;
            }
            offset += chunk.len() as i64;
        }
        pending.data.clear();
        rc
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file once; the pending buffer is freed here and nowhere else.
    unsafe {
        let flushed = flush(file);
        let inner = inner(file);
        let closed = match methods(inner).xClose {
            Some(close) => close(inner),
            None => ffi::SQLITE_OK,
        };
        let shim = file.cast::<ShimFile>();
        if !(*shim).wal.is_null() {
            drop(Box::from_raw((*shim).wal));
            (*shim).wal = ptr::null_mut();
        }
        if flushed != ffi::SQLITE_OK { flushed } else { closed }
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite passes `amount` readable bytes at `buf`.
    unsafe {
        let wal = (*file.cast::<ShimFile>()).wal;
        if wal.is_null() {
            let inner = inner(file);
            return match methods(inner).xWrite {
                Some(write) => write(inner, buf, amount, offset),
                None => ffi::SQLITE_IOERR_WRITE,
            };
        }
        let Ok(len) = usize::try_from(amount) else { return ffi::SQLITE_IOERR_WRITE };
        let must_flush = {
            let pending = &*wal;
            let continues =
                pending.data.is_empty() || offset == pending.offset + pending.data.len() as i64;
            !continues || pending.data.len() + len > MAX_BUFFER
        };
        if must_flush {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        let pending = &mut *wal;
        if pending.data.is_empty() {
            pending.offset = offset;
        }
        pending.data.extend_from_slice(std::slice::from_raw_parts(buf.cast::<u8>(), len));
        ffi::SQLITE_OK
    }
}

/// A method passed through to the real file; `flush` first for those that must see every
/// write (a read, a sync, a size, a truncate, a file control).
macro_rules! forward {
    ($flush:literal, $name:ident, $method:ident, $missing:expr $(, $arg:ident : $ty:ty)*) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: forwarded as SQLite called it.
            unsafe {
                if $flush {
                    let rc = flush(file);
                    if rc != ffi::SQLITE_OK {
                        return rc;
                    }
                }
                let inner = inner(file);
                match methods(inner).$method {
                    Some(method) => method(inner $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

forward!(true, read, xRead, ffi::SQLITE_IOERR_READ, buf: *mut c_void, amount: c_int, offset: i64);
forward!(true, truncate, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, size: i64);
forward!(true, sync, xSync, ffi::SQLITE_IOERR_FSYNC, flags: c_int);
forward!(true, file_size, xFileSize, ffi::SQLITE_IOERR_FSTAT, size: *mut i64);
forward!(true, file_control, xFileControl, ffi::SQLITE_NOTFOUND, op: c_int, arg: *mut c_void);
forward!(false, lock, xLock, ffi::SQLITE_IOERR_LOCK, level: c_int);
forward!(false, unlock, xUnlock, ffi::SQLITE_IOERR_UNLOCK, level: c_int);
forward!(false, check_reserved_lock, xCheckReservedLock, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK, out: *mut c_int);
forward!(false, sector_size, xSectorSize, 4096);
forward!(false, device_characteristics, xDeviceCharacteristics, 0);
forward!(false, shm_map, xShmMap, ffi::SQLITE_IOERR_SHMMAP, page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void);
forward!(false, shm_lock, xShmLock, ffi::SQLITE_IOERR_SHMLOCK, offset: c_int, n: c_int, flags: c_int);
forward!(false, shm_unmap, xShmUnmap, ffi::SQLITE_OK, delete: c_int);
forward!(false, fetch, xFetch, ffi::SQLITE_OK, offset: i64, amount: c_int, out: *mut *mut c_void);
forward!(false, unfetch, xUnfetch, ffi::SQLITE_OK, offset: i64, page: *mut c_void);

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: forwarded as SQLite called it.
    unsafe {
        let inner = inner(file);
        if let Some(barrier) = methods(inner).xShmBarrier {
            barrier(inner);
        }
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, ffi, params};

    use crate::schema;

    fn blob(i: i64, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
    }

    fn check(conn: &Connection, rows: &[(i64, usize)]) {
        let found: Vec<(i64, Vec<u8>)> = conn
            .prepare("SELECT id, body FROM t ORDER BY id")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let expected: Vec<(i64, Vec<u8>)> =
            rows.iter().map(|&(i, len)| (i, blob(i, len))).collect();
        assert_eq!(found.len(), expected.len());
        assert!(found == expected, "rows differ from what was committed");
        let ok: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
        assert_eq!(ok, "ok");
    }

    /// Commits small and large (several MAX_WRITE pieces, past MAX_BUFFER), a transaction that
    /// spills pages to the WAL before it commits and rolls a savepoint back, and in-place
    /// rewrites: a reader on the default VFS sees exactly what was committed, as does the
    /// database reopened after the writer is gone.
    #[test]
    fn readers_and_a_reopened_database_see_exactly_what_the_writer_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut writer = schema::open_writer(&path).unwrap();
        writer
            .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
            .unwrap();
        let reader = schema::open_reader(&path).unwrap();
        let mut rows = Vec::new();
        let insert = |conn: &Connection, rows: &mut Vec<(i64, usize)>, i: i64, len: usize| {
            conn.execute("INSERT OR REPLACE INTO t VALUES (?1, ?2)", params![i, blob(i, len)])
                .unwrap();
            rows.retain(|&(r, _)| r != i);
            rows.push((i, len));
            rows.sort();
        };
        // Small commits, one row each.
        for i in 0..50 {
            insert(&writer, &mut rows, i, 100);
        }
        check(&reader, &rows);
        // One commit of about 3 MiB: many pieces, and the buffer's cap.
        let tx = writer.transaction().unwrap();
        for i in 100..400 {
            insert(&tx, &mut rows, i, 10_000);
        }
        tx.commit().unwrap();
        check(&reader, &rows);
        // A tiny page cache makes the transaction spill pages to the WAL before its commit
        // (and rewrite or reread them); a rolled-back savepoint leaves frames never committed.
        writer.pragma_update(None, "cache_size", 4).unwrap();
        let mut tx = writer.transaction().unwrap();
        for i in 400..500 {
            insert(&tx, &mut rows, i, 3_000);
        }
        {
            let sp = tx.savepoint().unwrap();
            for i in 500..600 {
                sp.execute("INSERT INTO t VALUES (?1, ?2)", params![i, blob(i, 5_000)]).unwrap();
            }
            sp.execute("DELETE FROM t WHERE id < 50", []).unwrap();
            // Dropped: rolled back.
        }
        for i in (0..50).step_by(7) {
            insert(&tx, &mut rows, i, 4_000);
        }
        tx.commit().unwrap();
        check(&reader, &rows);
        check(&writer, &rows);
        // A checkpoint by the writer reads the WAL back through the shim.
        writer.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        insert(&writer, &mut rows, 1_000, 50);
        check(&reader, &rows);
        drop(reader);
        drop(writer);
        let reopened = schema::open_reader(&path).unwrap();
        check(&reopened, &rows);
    }

    /// The writer's WAL file, as the shim holds it (SQLite's journal pointer).
    fn wal_of(conn: &Connection) -> *mut super::ShimFile {
        let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
        // SAFETY: the handle is open; the file control writes one pointer.
        let rc = unsafe {
            ffi::sqlite3_file_control(
                conn.handle(),
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_JOURNAL_POINTER,
                (&raw mut file).cast(),
            )
        };
        assert_eq!(rc, ffi::SQLITE_OK);
        assert!(!file.is_null(), "no WAL open");
        // SAFETY: the file is open while the connection is.
        assert!(std::ptr::eq(unsafe { (*file).pMethods }, &super::METHODS), "not the shim");
        file.cast()
    }

    /// Writes the real WAL file has taken so far.
    fn writes(wal: *mut super::ShimFile) -> u64 {
        // SAFETY: the WAL's pending buffer lives as long as the file.
        unsafe { (*(*wal).wal).writes }
    }

    /// The writer runs on the shim with `synchronous=FULL`, and a commit of a few pages is one
    /// write to the WAL (SQLite alone makes two per page).
    #[test]
    fn a_commit_is_one_write_to_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let writer = schema::open_writer(&dir.path().join("t.db")).unwrap();
        let synchronous: i64 =
            writer.pragma_query_value(None, "synchronous", |row| row.get(0)).unwrap();
        assert!(synchronous >= 2, "synchronous is {synchronous}");
        writer
            .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
            .unwrap();
        let wal = wal_of(&writer);
        let before = writes(wal);
        // About ten pages: ten 3 KB rows.
        writer.execute_batch("BEGIN").unwrap();
        for i in 1..=10 {
            writer.execute("INSERT INTO t VALUES (?1, randomblob(3000))", [i]).unwrap();
        }
        writer.execute_batch("COMMIT").unwrap();
        let rows: i64 = writer.query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0)).unwrap();
        assert_eq!(rows, 10);
        assert_eq!(writes(wal) - before, 1);
    }
}
