//! The static file server's file system side: opening a request path beneath a root (one
//! `openat2(RESOLVE_BENEATH)` on Linux, a canonicalize-and-check path elsewhere and for symlinks it
//! defers), folder listings read from disk, small bodies read at once; and `respond`, the real
//! `http::files::respond` with these plugged in and the origin's cache rule (`origin_policy`). On Linux
//! each thread keeps an O_PATH descriptor per `Root::Dir` it has served (at most 8) so a hit costs three
//! system calls: openat2, fstat, close. Never touches a socket.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::http::files::{
    self, Body, Found, Root, Source, StaticPolicy, StaticRequest, StaticResponse,
};
use crate::http::listing::{ListingEntry, MAX_LISTING_ENTRIES};
use crate::http::mime::CachePolicy;
use crate::http::path::{clean_target, CleanPath, Refusal};

/// The origin's static policy: archived sessions are the folders the recorders name
/// (`record::paths::is_session_name`), so their files are cached as immutable.
pub fn origin_policy(dir_listing: bool) -> StaticPolicy {
    StaticPolicy {
        dir_listing,
        cache: CachePolicy {
            archived_dir: crate::record::paths::is_session_name,
        },
    }
}

/// Serves `req` from `roots` (see `http::files::respond`), looking folders up on disk; a body of at most
/// `INLINE_BODY_MAX` bytes is read now and goes out with the head.
pub fn respond(
    roots: &[Root],
    req: &StaticRequest,
    policy: &StaticPolicy,
    now: SystemTime,
) -> StaticResponse {
    let mut resp = files::respond(roots, req, policy, now, lookup_dir);
    if let Body::File { file, offset, len } = &resp.body {
        if let Some(body) = small_body(file, *offset, *len) {
            resp.body = body;
        }
    }
    resp
}

/// A body this small is read now, with one positioned read, and sent in the same vectored write as the head:
/// for pages, playlists and API-sized files that saves a seek, a second write and keeping the file open (8 system
/// calls per request down to 6). Larger bodies stream from the file as the socket drains.
pub const INLINE_BODY_MAX: u64 = 64 * 1024;

/// `Body::Owned` with `count` bytes at `start`, when `count` is at most `INLINE_BODY_MAX` and the read succeeds;
/// `None` leaves the body to the streaming path (which reports a file that shrank by closing the connection).
fn small_body(file: &File, start: u64, count: u64) -> Option<Body> {
    if count > INLINE_BODY_MAX {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; count as usize];
        file.read_exact_at(&mut buf, start).ok()?;
        Some(Body::Owned(buf))
    }
    #[cfg(not(unix))]
    {
        let _ = (file, start);
        None
    }
}

/// Resolves `target` under `root` to a canonical path (file or folder) that is inside the canonical root.
/// Errors: the `clean_target` refusals, `NotFound` when nothing is there, `OutsideRoot` when a symlink leads
/// out, `Unreadable` when the file system refuses.
pub fn resolve_path(root: &Path, target: &str) -> Result<PathBuf, Refusal> {
    resolve_clean(root, &clean_target(target)?)
}

fn resolve_clean(root: &Path, clean: &CleanPath) -> Result<PathBuf, Refusal> {
    let canonical_root = root.canonicalize().map_err(|_| Refusal::NotFound)?;
    let mut path = canonical_root.clone();
    for seg in &clean.segments {
        // Segments hold no '/', '\\' or NUL and are not "..", so each push adds exactly one name.
        path.push(seg);
    }
    let canonical = path.canonicalize().map_err(io_refusal)?;
    if !canonical.starts_with(&canonical_root) {
        return Err(Refusal::OutsideRoot);
    }
    if clean.trailing_slash && !canonical.is_dir() {
        return Err(Refusal::NotFound);
    }
    Ok(canonical)
}

fn io_refusal(e: io::Error) -> Refusal {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::InvalidFilename => {
            Refusal::NotFound
        }
        _ => Refusal::Unreadable,
    }
}

/// What the folder `root` has at `clean`, opened beneath it: the file system half of `files::respond`.
fn lookup_dir(root: &Path, clean: &CleanPath, dir_listing: bool) -> Result<Found, Refusal> {
    let (file, meta) = open_under(root, clean)?;
    if meta.is_dir() {
        drop(file);
        if !clean.trailing_slash && !clean.segments.is_empty() {
            return Ok(Found::Redirect(clean.url(true)));
        }
        let mut index = clean.clone();
        index.segments.push("index.html".to_string());
        index.trailing_slash = false;
        match open_under(root, &index) {
            Ok((file, meta)) if meta.is_file() => {
                return Ok(found_file(file, &meta, index.joined()))
            }
            Ok(_) | Err(Refusal::NotFound) => {}
            Err(r) => return Err(r),
        }
        if !dir_listing {
            return Err(Refusal::NoIndex);
        }
        let (entries, truncated) = read_listing(&resolve_clean(root, clean)?);
        return Ok(Found::Listing { entries, truncated });
    }
    if clean.trailing_slash {
        return Err(Refusal::NotFound);
    }
    if !meta.is_file() {
        return Err(Refusal::Unreadable);
    }
    Ok(found_file(file, &meta, clean.joined()))
}

fn found_file(file: File, meta: &fs::Metadata, name: String) -> Found {
    Found::File {
        source: Source::Disk(file),
        len: meta.len(),
        mtime: meta.modified().unwrap_or(UNIX_EPOCH),
        name,
    }
}

/// Opens the file or folder at `clean` under `root`, never outside it, and never blocking (a FIFO opens at once
/// and is then refused by the caller as not a regular file).
///
/// On Linux the kernel enforces the root in one `openat2(RESOLVE_BENEATH)` call. Symlinks that it will not
/// follow beneath the root (absolute ones, or ones through `..`), and kernels without openat2, take the portable
/// path: canonicalize, check the prefix, open the canonical path with O_NOFOLLOW. That path is also what
/// `resolve_path` tests, so both agree on what is inside.
fn open_under(root: &Path, clean: &CleanPath) -> Result<(File, fs::Metadata), Refusal> {
    #[cfg(target_os = "linux")]
    match beneath::open(root, &clean.joined()) {
        beneath::Outcome::Opened(file) => {
            let meta = file.metadata().map_err(|_| Refusal::Unreadable)?;
            return Ok((file, meta));
        }
        beneath::Outcome::Missing => return Err(Refusal::NotFound),
        beneath::Outcome::Denied => return Err(Refusal::Unreadable),
        beneath::Outcome::Undecided => {}
    }
    let path = resolve_clean(root, clean)?;
    let mut opts = fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NOFOLLOW: a symlink swapped in since the check is not followed.
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = opts.open(&path).map_err(|e| match io_refusal(e) {
        Refusal::NotFound => Refusal::NotFound,
        _ => Refusal::Unreadable,
    })?;
    let meta = file.metadata().map_err(|_| Refusal::Unreadable)?;
    Ok((file, meta))
}

/// `openat2(2)` with RESOLVE_BENEATH: one system call instead of a realpath walk per request, and no window
/// between the check and the open.
#[cfg(target_os = "linux")]
mod beneath {
    use std::cell::RefCell;
    use std::ffi::{CStr, CString};
    use std::fs::{File, OpenOptions};
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::{Path, PathBuf};

    pub(super) enum Outcome {
        Opened(File),
        Missing,
        Denied,
        /// Not decided here: no openat2, or a symlink it will not follow. The caller checks the slow way.
        Undecided,
    }

    /// linux/openat2.h `struct open_how` (libc's is non_exhaustive, so it cannot be built outside libc).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }

    /// Roots this thread has opened (O_PATH), so a request costs openat2 + fstat + close and no more.
    const MAX_CACHED_ROOTS: usize = 8;

    thread_local! {
        static ROOTS: RefCell<Vec<(PathBuf, OwnedFd)>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn open(root: &Path, rel: &str) -> Outcome {
        let rel = if rel.is_empty() { "." } else { rel };
        // Cleaned segments hold no NUL, so this cannot fail; if it did, the slow path decides.
        let Ok(c_rel) = CString::new(rel) else {
            return Outcome::Undecided;
        };
        match with_root(root, false, |fd| openat2(fd, &c_rel)) {
            // The cached root may be a folder since deleted or replaced: ask once more with a fresh one before
            // answering 404 (misses pay two extra calls; hits pay none).
            (Outcome::Missing, true) => with_root(root, true, |fd| openat2(fd, &c_rel)).0,
            (outcome, _) => outcome,
        }
    }

    /// Runs `f` on an O_PATH descriptor of `root`, cached per thread; the flag says whether it came from the
    /// cache. `refresh` drops the cached one first.
    fn with_root(root: &Path, refresh: bool, f: impl FnOnce(RawFd) -> Outcome) -> (Outcome, bool) {
        ROOTS.with(|cell| {
            let mut roots = cell.borrow_mut();
            if refresh {
                roots.retain(|(p, _)| p != root);
            }
            if let Some((_, fd)) = roots.iter().find(|(p, _)| p == root) {
                return (f(fd.as_raw_fd()), true);
            }
            let Ok(dir) = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                .open(root)
            else {
                return (Outcome::Undecided, false);
            };
            let fd = OwnedFd::from(dir);
            let outcome = f(fd.as_raw_fd());
            if roots.len() >= MAX_CACHED_ROOTS {
                roots.remove(0);
            }
            roots.push((root.to_path_buf(), fd));
            (outcome, false)
        })
    }

    fn openat2(dir: RawFd, rel: &CStr) -> Outcome {
        let how = OpenHow {
            flags: (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY) as u64,
            mode: 0,
            resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: a valid directory fd, a NUL-terminated path and a struct of the size passed; the kernel only
        // reads them.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                rel.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: openat2 returned a new descriptor that nothing else owns.
            return Outcome::Opened(unsafe { File::from_raw_fd(fd as RawFd) });
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ENAMETOOLONG) => Outcome::Missing,
            Some(libc::EACCES) => Outcome::Denied,
            // EXDEV: resolution would leave the root or met an absolute symlink; ELOOP, ENOSYS, EPERM (seccomp),
            // EINVAL (old struct size) and anything else: let the portable check decide.
            _ => Outcome::Undecided,
        }
    }
}

/// The entries of `dir` for a listing (hidden names and non-UTF-8 names left out), at most
/// `MAX_LISTING_ENTRIES`; the flag says there were more.
fn read_listing(dir: &Path) -> (Vec<ListingEntry>, bool) {
    let mut entries = Vec::new();
    let mut truncated = false;
    if let Ok(rd) = fs::read_dir(dir) {
        for entry in rd.flatten() {
            if entries.len() >= MAX_LISTING_ENTRIES {
                truncated = true;
                break;
            }
            let name = entry.file_name();
            let Some(name) = OsStr::to_str(&name) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            // fs::metadata follows symlinks: a link shows as what it points to (serving it is checked later).
            let Ok(meta) = fs::metadata(entry.path()) else {
                continue;
            };
            entries.push(ListingEntry {
                is_dir: meta.is_dir(),
                name: name.to_string(),
                size: meta.len(),
            });
        }
    }
    (entries, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::date::http_date;
    use crate::http::embedded;
    use crate::http::files::tests::{body_bytes, header, now, req};
    use crate::http::files::ALLOW;
    use crate::http::mime::{ARCHIVE_CACHE, LIVE_SEGMENT_CACHE, REVALIDATE};
    use crate::http::path::MAX_PATH_LEN;
    use std::io::Write as _;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A temporary folder removed on drop (no tempfile crate here).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "rtmpd-files-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }

        fn write(&self, rel: &str, data: &[u8]) -> PathBuf {
            let p = self.0.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, data).unwrap();
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// The whole responder as the origin runs it.
    fn serve(
        roots: &[Root],
        r: &StaticRequest,
        dir_listing: bool,
        now: SystemTime,
    ) -> StaticResponse {
        respond(roots, r, &origin_policy(dir_listing), now)
    }

    fn head_str(r: &StaticResponse) -> String {
        String::from_utf8(r.head.clone()).unwrap()
    }

    /// A root with a few files, used by most tests.
    fn fixture() -> TempDir {
        let t = TempDir::new();
        t.write("a.txt", b"hello world");
        t.write("..foo", b"dots");
        t.write("sub/index.html", b"<p>sub</p>");
        t.write("sub/x.ts", &[0x47; 188]);
        t.write("bare/one.txt", b"1");
        t.write("bare/<b>&\"q\".txt", b"2");
        t.write("bare/inner/two.txt", b"22");
        t.write("bare/javascript:alert(1)", b"3");
        t
    }

    #[test]
    fn traversal_spellings_are_refused() {
        use Refusal::*;
        let t = fixture();
        let cases: &[(&str, Refusal)] = &[
            ("/../etc/passwd", DotDot),
            ("/sub/../../etc/passwd", DotDot),
            ("/sub/..", DotDot),
            ("/%2e%2e/etc/passwd", DotDot),
            ("/%2E%2e/etc/passwd", DotDot),
            ("/.%2E/etc/passwd", DotDot),
            ("/sub/%2e%2e%2f%2e%2e%2fetc%2fpasswd", DotDot),
            ("/sub/..%2f..%2fetc/passwd", DotDot),
            ("/..%5c..%5cetc%5cpasswd", Backslash),
            ("/..%5C..%5Cetc", Backslash),
            ("/sub\\..\\..\\etc", Backslash),
            ("/%252e%252e/etc/passwd", DoubleEncoded),
            ("/%252E%252E%252Fetc", DoubleEncoded),
            ("/..%252f..%252fetc", DoubleEncoded),
            ("/..%255c..%255cetc", DoubleEncoded),
            ("/a.txt%2500", DoubleEncoded),
            ("//etc/passwd", Absolute),
            ("/%2fetc/passwd", Absolute),
            ("/%2Fetc/passwd", Absolute),
            ("/C:/Windows/win.ini", Absolute),
            ("/c:", Absolute),
            ("/a.txt%00.html", Nul),
            ("/a.txt\0", Nul),
            ("/%zz", BadEncoding),
            ("/%2", BadEncoding),
            ("/a%", BadEncoding),
            ("/%ff%fe", BadEncoding),
            ("etc/passwd", BadTarget),
            ("*", BadTarget),
            ("", BadTarget),
            ("/a\r\nX: y", BadTarget),
            ("/missing.txt", NotFound),
            ("/a.txt/", NotFound),
            ("/sub/missing/x", NotFound),
        ];
        for (target, want) in cases {
            assert_eq!(resolve_path(&t.0, target), Err(*want), "target {target:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN + 1));
        assert_eq!(clean_target(&long), Err(BadTarget));
    }

    #[test]
    fn ordinary_paths_resolve_inside_the_root() {
        let t = fixture();
        let root = t.0.canonicalize().unwrap();
        let cases: &[(&str, &str)] = &[
            ("/a.txt", "a.txt"),
            ("/..foo", "..foo"),
            ("/%2e%2efoo", "..foo"),
            ("/./a.txt", "a.txt"),
            ("/sub//x.ts", "sub/x.ts"),
            ("/sub/./x.ts", "sub/x.ts"),
            ("/a.txt?path=../../etc/passwd", "a.txt"),
            ("/a.txt#../../x", "a.txt"),
            ("/%61.txt", "a.txt"),
            ("http://example.com/a.txt", "a.txt"),
            ("HTTPS://example.com/sub/x.ts?x", "sub/x.ts"),
            ("/", ""),
            ("/sub/", "sub"),
        ];
        for (target, rel) in cases {
            let want = if rel.is_empty() {
                root.clone()
            } else {
                root.join(rel)
            };
            assert_eq!(resolve_path(&t.0, target), Ok(want), "target {target:?}");
        }
        let c = clean_target("/a/b/").unwrap();
        assert_eq!(c.segments, ["a", "b"]);
        assert!(c.trailing_slash);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_followed_only_inside_the_root() {
        use std::os::unix::fs::symlink;
        let t = fixture();
        let outside = TempDir::new();
        outside.write("secret.txt", b"secret");
        symlink("sub/x.ts", t.0.join("in_file.ts")).unwrap();
        symlink(t.0.join("sub"), t.0.join("in_dir")).unwrap();
        symlink(outside.0.join("secret.txt"), t.0.join("out_file")).unwrap();
        symlink(&outside.0, t.0.join("out_dir")).unwrap();
        symlink("../../", t.0.join("sub/up")).unwrap();
        symlink("/etc/passwd", t.0.join("passwd")).unwrap();
        symlink(outside.0.join("secret.txt"), t.0.join("bare/index.html")).unwrap();

        let root = t.0.canonicalize().unwrap();
        assert_eq!(resolve_path(&t.0, "/in_file.ts"), Ok(root.join("sub/x.ts")));
        assert_eq!(
            resolve_path(&t.0, "/in_dir/x.ts"),
            Ok(root.join("sub/x.ts"))
        );
        for target in [
            "/out_file",
            "/out_dir/secret.txt",
            "/out_dir/",
            "/sub/up/",
            "/passwd",
        ] {
            assert_eq!(
                resolve_path(&t.0, target),
                Err(Refusal::OutsideRoot),
                "{target}"
            );
        }
        let roots = [Root::Dir(t.0.clone())];
        let via_up = format!(
            "/sub/up/{}/secret.txt",
            outside.0.file_name().unwrap().to_str().unwrap()
        );
        for target in [
            "/out_file",
            "/out_dir/secret.txt",
            "/out_dir/",
            "/sub/up/",
            via_up.as_str(),
            "/passwd",
        ] {
            let r = serve(&roots, &req("GET", target), true, now());
            assert_eq!(
                (r.status, r.refusal),
                (403, Some(Refusal::OutsideRoot)),
                "{target}"
            );
        }
        let r = serve(&roots, &req("GET", "/in_dir/x.ts"), false, now());
        assert_eq!(r.status, 200);
        // index.html that is a symlink out of the root is refused, not served and not replaced by a listing.
        let r = serve(&roots, &req("GET", "/bare/"), true, now());
        assert_eq!((r.status, r.refusal), (403, Some(Refusal::OutsideRoot)));
        let r = serve(&roots, &req("GET", "/in_file.ts"), false, now());
        assert_eq!(r.status, 200);
        assert_eq!(header(&r, "Content-Type").as_deref(), Some("video/mp2t"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn openat2_fast_path_decides_plain_cases_and_defers_symlinks_out() {
        use std::os::unix::fs::symlink;
        let t = fixture();
        let outside = TempDir::new();
        outside.write("secret.txt", b"secret");
        symlink(outside.0.join("secret.txt"), t.0.join("abs_out")).unwrap();
        symlink("../../../../../../../../etc/passwd", t.0.join("rel_out")).unwrap();
        symlink("sub/x.ts", t.0.join("rel_in.ts")).unwrap();
        let opened = |rel: &str| matches!(beneath::open(&t.0, rel), beneath::Outcome::Opened(_));
        let missing = |rel: &str| matches!(beneath::open(&t.0, rel), beneath::Outcome::Missing);
        let undecided = |rel: &str| matches!(beneath::open(&t.0, rel), beneath::Outcome::Undecided);
        if undecided("a.txt") {
            // A kernel without openat2 (or a sandbox refusing it): the portable path covers every test.
            return;
        }
        assert!(
            opened("a.txt")
                && opened("sub/x.ts")
                && opened("")
                && opened("sub")
                && opened("rel_in.ts")
        );
        assert!(missing("nope") && missing("a.txt/x"));
        assert!(undecided("abs_out") && undecided("rel_out"));
        // What the fast path defers, the portable check refuses.
        let roots = [Root::Dir(t.0.clone())];
        for target in ["/abs_out", "/rel_out"] {
            let r = serve(&roots, &req("GET", target), false, now());
            assert_eq!(
                (r.status, r.refusal),
                (403, Some(Refusal::OutsideRoot)),
                "{target}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn fifo_is_refused_without_blocking() {
        let t = fixture();
        let p = std::ffi::CString::new(t.0.join("pipe").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file system node.
        assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o644) }, 0);
        let r = serve(
            &[Root::Dir(t.0.clone())],
            &req("GET", "/pipe"),
            false,
            now(),
        );
        assert_eq!((r.status, r.refusal), (403, Some(Refusal::Unreadable)));
    }

    #[test]
    fn range_responses_are_byte_exact() {
        let t = fixture();
        let roots = [Root::Dir(t.0.clone())];
        let mut r = req("GET", "/a.txt");
        r.range = Some("bytes=6-");
        let resp = serve(&roots, &r, false, now());
        assert_eq!(resp.status, 206);
        assert_eq!(
            header(&resp, "Content-Range").as_deref(),
            Some("bytes 6-10/11")
        );
        assert_eq!(header(&resp, "Content-Length").as_deref(), Some("5"));
        assert_eq!(resp.body_len, 5);
        assert_eq!(body_bytes(resp), b"world");

        r.range = Some("bytes=-5000");
        let resp = serve(&roots, &r, false, now());
        assert_eq!(
            header(&resp, "Content-Range").as_deref(),
            Some("bytes 0-10/11")
        );
        assert_eq!(body_bytes(resp), b"hello world");

        r.range = Some("bytes=11-");
        let resp = serve(&roots, &r, false, now());
        assert_eq!(resp.status, 416);
        assert_eq!(
            header(&resp, "Content-Range").as_deref(),
            Some("bytes */11")
        );

        r.range = Some("bytes=0-1,3-4");
        let resp = serve(&roots, &r, false, now());
        assert_eq!((resp.status, resp.body_len), (200, 11));
        assert_eq!(header(&resp, "Content-Range"), None);
    }

    #[test]
    fn conditional_requests() {
        let t = fixture();
        let roots = [Root::Dir(t.0.clone())];
        let first = serve(&roots, &req("GET", "/a.txt"), false, now());
        assert_eq!(first.status, 200);
        let etag = header(&first, "ETag").unwrap();
        let last_modified = header(&first, "Last-Modified").unwrap();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let mtime = fs::metadata(t.0.join("a.txt")).unwrap().modified().unwrap();
        assert_eq!(last_modified, http_date(mtime));

        let status = |inm: Option<&str>, ims: Option<&str>| {
            let mut r = req("GET", "/a.txt");
            r.if_none_match = inm;
            r.if_modified_since = ims;
            let resp = serve(&roots, &r, false, now());
            if resp.status == 304 {
                assert!(matches!(resp.body, Body::Empty));
                assert_eq!(resp.body_len, 0);
                assert_eq!(header(&resp, "ETag").as_deref(), Some(etag.as_str()));
                assert_eq!(header(&resp, "Content-Length"), None);
            }
            resp.status
        };
        let weak = format!("W/{etag}");
        let listed = format!("\"nope\", {etag}");
        let earlier = http_date(mtime - Duration::from_secs(3600));
        let later = http_date(mtime + Duration::from_secs(1));
        assert_eq!(status(Some(&etag), None), 304);
        assert_eq!(status(Some(&weak), None), 304);
        assert_eq!(status(Some(&listed), None), 304);
        assert_eq!(status(Some("*"), None), 304);
        assert_eq!(status(Some("\"other\""), None), 200);
        assert_eq!(status(None, Some(&last_modified)), 304);
        assert_eq!(status(None, Some(&later)), 304);
        assert_eq!(status(None, Some(&earlier)), 200);
        assert_eq!(status(None, Some("not a date")), 200);
        // If-None-Match decides when present, whatever If-Modified-Since says.
        assert_eq!(status(Some("\"other\""), Some(&last_modified)), 200);
        assert_eq!(status(Some(&etag), Some(&earlier)), 304);
        // A date in the future is invalid and ignored.
        let future = http_date(now() + Duration::from_secs(86_400));
        assert_eq!(status(None, Some(&future)), 200);
    }

    #[test]
    fn cache_control_policy() {
        let cases: &[(&str, &str)] = &[
            ("hls/live/s/index.m3u8", REVALIDATE),
            ("mp4/live/s/output_merge/meta.json", REVALIDATE),
            ("index.html", REVALIDATE),
            ("hls/live/s/segment_3.ts", LIVE_SEGMENT_CACHE),
            ("mp4/live/s/output_merge/segment_3.m4s", LIVE_SEGMENT_CACHE),
            ("mp4/live/s/output_merge/init.mp4", REVALIDATE),
            ("flv/live/s/20261124_010203.flv", REVALIDATE),
            ("hls/live/s/20261124_010203/segment_3.ts", ARCHIVE_CACHE),
            ("hls/live/s/20261124_010203/index.m3u8", ARCHIVE_CACHE),
            (
                "mp4/live/s/20261124_010203_2/output_merge/stream_full.mp4",
                ARCHIVE_CACHE,
            ),
            ("hls/live/2026112_010203/index.m3u8", REVALIDATE),
        ];
        for (p, want) in cases {
            assert_eq!(
                origin_policy(false).cache.cache_control_for(p),
                *want,
                "{p}"
            );
        }
    }

    #[test]
    fn get_sends_headers_and_file_body() {
        let t = fixture();
        let resp = serve(
            &[Root::Dir(t.0.clone())],
            &req("GET", "/a.txt"),
            false,
            now(),
        );
        assert_eq!(resp.status, 200);
        let head = head_str(&resp);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        for (k, v) in [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", "11"),
            ("Accept-Ranges", "bytes"),
            ("Access-Control-Allow-Origin", "*"),
            ("Cache-Control", "no-cache"),
            ("Connection", "keep-alive"),
            ("Server", "rtmpd"),
        ] {
            assert_eq!(header(&resp, k).as_deref(), Some(v), "{k}");
        }
        assert!(header(&resp, "Date").unwrap().ends_with(" GMT"));
        assert_eq!(resp.log_path, "/a.txt");
        // Small bodies are read at once and go out with the head.
        assert!(matches!(&resp.body, Body::Owned(v) if v == b"hello world"));
        assert_eq!(body_bytes(resp), b"hello world");

        // Larger ones stream from the file; a range of one stays inline when it is small.
        let big: Vec<u8> = (0..INLINE_BODY_MAX as usize + 1)
            .map(|i| (i % 251) as u8)
            .collect();
        t.write("big.bin", &big);
        let resp = serve(
            &[Root::Dir(t.0.clone())],
            &req("GET", "/big.bin"),
            false,
            now(),
        );
        assert!(matches!(
            resp.body,
            Body::File { offset: 0, len, .. } if len == INLINE_BODY_MAX + 1
        ));
        assert_eq!(body_bytes(resp), big);
        let mut r = req("GET", "/big.bin");
        r.range = Some("bytes=-1000");
        let resp = serve(&[Root::Dir(t.0.clone())], &r, false, now());
        assert_eq!(resp.status, 206);
        assert!(matches!(&resp.body, Body::Owned(v) if v[..] == big[big.len() - 1000..]));

        let mut r = req("GET", "/a.txt");
        r.keep_alive = false;
        let resp = serve(&[Root::Dir(t.0.clone())], &r, false, now());
        assert_eq!(header(&resp, "Connection").as_deref(), Some("close"));
    }

    #[test]
    fn head_has_length_but_no_body() {
        let t = fixture();
        let resp = serve(
            &[Root::Dir(t.0.clone())],
            &req("HEAD", "/sub/x.ts"),
            false,
            now(),
        );
        assert_eq!(resp.status, 200);
        assert_eq!(header(&resp, "Content-Length").as_deref(), Some("188"));
        assert_eq!(resp.body_len, 0);
        assert!(matches!(resp.body, Body::Empty));
        let resp = serve(
            &[Root::Dir(t.0.clone())],
            &req("HEAD", "/missing"),
            false,
            now(),
        );
        assert_eq!((resp.status, resp.body_len), (404, 0));
        assert!(matches!(resp.body, Body::Empty));
    }

    #[test]
    fn other_methods_get_405_and_options_204() {
        let t = fixture();
        let roots = [Root::Dir(t.0.clone())];
        for m in ["POST", "PUT", "DELETE", "PATCH", "get", "TRACE"] {
            let resp = serve(&roots, &req(m, "/a.txt"), false, now());
            assert_eq!(
                (resp.status, resp.refusal),
                (405, Some(Refusal::Method)),
                "{m}"
            );
            assert_eq!(header(&resp, "Allow").as_deref(), Some(ALLOW));
        }
        let resp = serve(&roots, &req("OPTIONS", "*"), false, now());
        assert_eq!((resp.status, resp.body_len), (204, 0));
        assert_eq!(
            header(&resp, "Access-Control-Allow-Origin").as_deref(),
            Some("*")
        );
        assert_eq!(
            header(&resp, "Access-Control-Allow-Methods").as_deref(),
            Some(ALLOW)
        );
        assert!(header(&resp, "Access-Control-Allow-Headers")
            .unwrap()
            .contains("Range"));
    }

    #[test]
    fn folders_index_redirect_and_listing() {
        let t = fixture();
        let roots = [Root::Dir(t.0.clone())];
        let resp = serve(&roots, &req("GET", "/sub/"), false, now());
        assert_eq!(resp.status, 200);
        assert_eq!(
            header(&resp, "Content-Type").as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(body_bytes(resp), b"<p>sub</p>");

        let resp = serve(&roots, &req("GET", "/sub?x=1"), false, now());
        assert_eq!(resp.status, 301);
        assert_eq!(header(&resp, "Location").as_deref(), Some("/sub/?x=1"));

        // No index.html: 403 unless listings are on.
        let resp = serve(&roots, &req("GET", "/bare/"), false, now());
        assert_eq!((resp.status, resp.refusal), (403, Some(Refusal::NoIndex)));
        let resp = serve(&roots, &req("GET", "/"), false, now());
        assert_eq!(resp.status, 403);

        let resp = serve(&roots, &req("GET", "/bare/"), true, now());
        assert_eq!(resp.status, 200);
        let page = String::from_utf8(body_bytes(resp)).unwrap();
        assert!(page.contains("<a href=\"inner/\">inner/</a>"), "{page}");
        assert!(page.contains("<a href=\"one.txt\">one.txt</a>"), "{page}");
        assert!(
            page.contains("<a href=\"%3Cb%3E%26%22q%22.txt\">&lt;b&gt;&amp;&quot;q&quot;.txt</a>"),
            "{page}"
        );
        assert!(
            page.contains("<a href=\"javascript%3Aalert(1)\">javascript:alert(1)</a>"),
            "{page}"
        );
        assert!(!page.contains("<b>"), "{page}");
        assert!(
            page.find("inner/").unwrap() < page.find("one.txt").unwrap(),
            "folders first"
        );
        assert!(page.contains("href=\"../\""));
    }

    #[test]
    fn first_root_with_the_path_wins() {
        let web = TempDir::new();
        web.write("index.html", b"web");
        web.write("shared.txt", b"from web");
        let data = fixture();
        data.write("shared.txt", b"from data");
        data.write("hls/live/s/index.m3u8", b"#EXTM3U\n");
        let roots = [Root::Dir(web.0.clone()), Root::Dir(data.0.clone())];
        assert_eq!(
            body_bytes(serve(&roots, &req("GET", "/"), false, now())),
            b"web"
        );
        assert_eq!(
            body_bytes(serve(&roots, &req("GET", "/shared.txt"), false, now())),
            b"from web"
        );
        let resp = serve(&roots, &req("GET", "/hls/live/s/index.m3u8"), false, now());
        assert_eq!(
            header(&resp, "Content-Type").as_deref(),
            Some("application/vnd.apple.mpegurl")
        );
        assert_eq!(header(&resp, "Cache-Control").as_deref(), Some("no-cache"));
        assert_eq!(body_bytes(resp), b"#EXTM3U\n");
        assert_eq!(
            serve(&roots, &req("GET", "/nothing"), false, now()).status,
            404
        );

        // The built-in pages first, the data folder second: how the origin is wired.
        let roots = [Root::Embedded, Root::Dir(data.0.clone())];
        assert_eq!(
            body_bytes(serve(&roots, &req("GET", "/a.txt"), false, now())),
            b"hello world"
        );
        let resp = serve(&roots, &req("GET", "/"), false, now());
        assert_eq!(body_bytes(resp), embedded::get("index.html").unwrap().data);
    }

    #[test]
    fn growing_file_is_served_up_to_its_size_at_open() {
        let t = fixture();
        let p = t.write("grow.flv", b"FLV\x01");
        let resp = serve(
            &[Root::Dir(t.0.clone())],
            &req("GET", "/grow.flv"),
            false,
            now(),
        );
        fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"more bytes")
            .unwrap();
        assert_eq!(header(&resp, "Content-Length").as_deref(), Some("4"));
        assert_eq!(body_bytes(resp), b"FLV\x01");
    }
}
