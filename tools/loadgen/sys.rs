//! What the tool reads from and sets in the operating system: the server's CPU time and memory
//! from /proc, its own CPU time, the open-file limit and SO_LINGER. No protocol code.

use std::io;

use mio::net::TcpStream;

#[derive(Clone, Copy, Debug)]
pub(crate) struct ProcSample {
    /// utime + stime in clock ticks.
    pub(crate) cpu_ticks: u64,
    pub(crate) rss_kib: u64,
    pub(crate) hwm_kib: u64,
}

impl ProcSample {
    pub(crate) fn read(pid: u32) -> io::Result<ProcSample> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .ok_or_else(|| bad("no ')' in /proc/PID/stat"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Field 3 (state) is fields[0]; utime and stime are fields 14 and 15.
        let tick = |i: usize| -> io::Result<u64> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| bad("short /proc/PID/stat"))
        };
        let cpu_ticks = tick(11)? + tick(12)?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Ok(ProcSample {
            cpu_ticks,
            rss_kib: kib("VmRSS:"),
            hwm_kib: kib("VmHWM:"),
        })
    }
}

#[cfg(unix)]
pub(crate) fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

#[cfg(not(unix))]
pub(crate) fn clock_ticks() -> f64 {
    100.0
}

/// CPU seconds this process has used (user + system).
#[cfg(unix)]
pub(crate) fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[cfg(not(unix))]
pub(crate) fn own_cpu_seconds() -> f64 {
    0.0
}

/// Every viewer is a socket: raise the soft open-file limit to the hard one.
#[cfg(unix)]
pub(crate) fn raise_nofile_limit() {
    // SAFETY: plain get/setrlimit on a struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[cfg(not(unix))]
pub(crate) fn raise_nofile_limit() {}

/// Close with RST instead of FIN: ten thousand sockets per run would otherwise sit in
/// TIME_WAIT and use up the ephemeral ports for the next run.
#[cfg(unix)]
pub(crate) fn set_linger_zero(sock: &TcpStream) {
    use std::os::unix::io::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads the linger struct we pass with its exact size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

#[cfg(not(unix))]
pub(crate) fn set_linger_zero(_sock: &TcpStream) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn proc_sample_of_self() {
        let s = ProcSample::read(std::process::id()).unwrap();
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
    }
}
