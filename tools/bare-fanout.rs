//! bare-fanout: the floor for merged writes, to compare rtmpd against. It serves one FLV file
//! as a live HTTP-FLV stream (paced by the tags' timestamps, looped) and every TICK ms writes
//! what arrived to every viewer with one write(2): no hub, no queues, no slow-viewer policy, no
//! GOP cache (viewers start at the next keyframe). What it costs per GB is what any server
//! pays that writes each viewer once per tick on this machine.
//!
//!     cargo build --release --example bare-fanout
//!     target/release/examples/bare-fanout target/bench-media/s2m.flv [TICK_MS] &
//!     # prints "port N"; then, with its PID ($!):
//!     target/release/rtmpd-load --url http://127.0.0.1:N/live/s2m.flv --viewers 1000 \
//!         --duration 20 --server-pid PID
//!
//! Listens on 127.0.0.1 only and runs until killed. A viewer whose socket is full loses the
//! rest of that tick's bytes (the load generator then reports it as not full).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

struct Tag {
    time: u64,
    key: bool,
    bytes: Vec<u8>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: bare-fanout FILE.flv [TICK_MS]");
        std::process::exit(2);
    };
    let file = std::fs::read(path).expect("read the FLV file");
    let tick = Duration::from_millis(args.get(2).map_or(100, |s| s.parse().expect("TICK_MS")));
    let (start, media) = split(&file);
    assert!(!media.is_empty(), "no media tags in {path}");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    println!("port {}", listener.local_addr().expect("address").port());

    let mut viewers: Vec<(TcpStream, bool)> = Vec::new(); // (socket, started at a keyframe)
    let t0 = Instant::now();
    let (mut next, mut base) = (0usize, 0u64);
    let mut pending: Vec<u8> = Vec::new();
    let mut key_at: Option<usize> = None;
    let mut next_tick = t0 + tick;
    loop {
        while let Ok((mut s, _)) = listener.accept() {
            let _ = s.set_nodelay(true);
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let mut request = [0u8; 4096];
            let _ = s.read(&mut request);
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: video/x-flv\r\n\r\n");
            let _ = s.write_all(&start);
            let _ = s.set_nonblocking(true);
            viewers.push((s, false));
        }
        let now = Instant::now();
        let media_now = now.duration_since(t0).as_millis() as u64;
        while base + media[next].time <= media_now {
            let t = &media[next];
            if t.key && key_at.is_none() {
                key_at = Some(pending.len());
            }
            pending.extend_from_slice(&t.bytes);
            next += 1;
            if next == media.len() {
                next = 0;
                base += media[media.len() - 1].time + 40;
            }
        }
        if now >= next_tick {
            next_tick = now + tick;
            for (s, started) in viewers.iter_mut() {
                let from = match (*started, key_at) {
                    (true, _) => 0,
                    (false, Some(k)) => k,
                    (false, None) => continue,
                };
                *started = true;
                let _ = s.write(&pending[from..]);
            }
            pending.clear();
            key_at = None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The file header with the metadata and sequence headers (sent on connect), and the media tags.
fn split(file: &[u8]) -> (Vec<u8>, Vec<Tag>) {
    let mut start = file[..13.min(file.len())].to_vec();
    let mut media = Vec::new();
    let mut p = 13;
    while p + 11 <= file.len() {
        let kind = file[p];
        let size = u32::from_be_bytes([0, file[p + 1], file[p + 2], file[p + 3]]) as usize;
        let time = u32::from_be_bytes([file[p + 7], file[p + 4], file[p + 5], file[p + 6]]);
        let end = p + 11 + size + 4;
        if end > file.len() || size < 2 {
            break;
        }
        let body = &file[p + 11..p + 11 + size];
        let header = kind == 18
            || (matches!(kind, 8 | 9) && body[1] == 0 && !(kind == 9 && body[0] & 0x0f != 7));
        if header {
            start.extend_from_slice(&file[p..end]);
        } else {
            let key = kind == 9 && body[0] >> 4 == 1;
            media.push(Tag {
                time: time as u64,
                key,
                bytes: file[p..end].to_vec(),
            });
        }
        p = end;
    }
    (start, media)
}
