//! Process limits: raise the open-file soft limit to the hard limit so the only connection cap is
//! the operating system's, and read our own CPU time and memory for the API and the metrics.

/// Raises RLIMIT_NOFILE's soft limit to its hard limit; returns the limit now in force.
#[cfg(unix)]
pub fn raise_nofile() -> Option<u64> {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        // rlim_t is u64 on Linux but not on every Unix.
        #[allow(clippy::unnecessary_cast)]
        Some(lim.rlim_cur as u64)
    }
}

#[cfg(not(unix))]
pub fn raise_nofile() -> Option<u64> {
    None
}

/// Connections a listener queues before we accept them. mio listens with 128; a thousand
/// players arriving at once would overflow that and each dropped SYN costs its player a second
/// (the client's retransmit), so the backlog is raised (the kernel caps it at somaxconn).
pub const LISTEN_BACKLOG: i32 = 4096;

/// Re-listens with `LISTEN_BACKLOG` (calling listen again on a listening socket only changes
/// its backlog).
#[cfg(unix)]
pub fn deepen_backlog(listener: &mio::net::TcpListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: listen on a socket we own; failure leaves the old backlog in place.
    unsafe {
        libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG);
    }
}

#[cfg(not(unix))]
pub fn deepen_backlog(_listener: &mio::net::TcpListener) {}

/// CPU seconds (user + system) this process has used.
#[cfg(unix)]
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

#[cfg(not(unix))]
pub fn cpu_seconds() -> f64 {
    0.0
}

/// Resident set size in bytes (Linux: /proc/self/statm), if known.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
