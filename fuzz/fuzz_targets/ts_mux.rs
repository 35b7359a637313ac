//! The MPEG-TS writer (`mux::ts`) fed an arbitrary frame sequence, as the HLS recorder drives it
//! (tables, then one PES per frame; AAC framed as ADTS). Checked on the output: every packet is 188
//! bytes with a sync byte and a sane adaptation field; continuity counters run on; every PSI CRC
//! holds; each PES reassembles to its header plus exactly the bytes given, with PES_packet_length
//! and ADTS frame_length matching the bytes (or PES length 0, allowed for video only).
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtmpd::media::aac::AudioSpecificConfig;
use rtmpd::mux::ts::{
    adts_frame, crc32_mpeg2, ADTS_MAX_PAYLOAD, Es, Pes, Program, StreamType, TsWriter, PACKET_LEN, PID_AUDIO,
    PID_PAT, PID_PMT, PID_VIDEO,
};
use rtmpd_fuzz::{frames, Cursor};
use std::collections::HashMap;

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let setup = c.u8();
    let asc = AudioSpecificConfig::parse(&[0x12, 0x10]).expect("AAC-LC stereo 44.1 kHz");
    let program = Program {
        video: (setup & 1 != 0).then_some(StreamType::H264),
        audio: (setup & 2 != 0).then_some(StreamType::Aac),
    };
    let mut w = TsWriter::new(program);
    let mut out = Vec::new();
    let mut expected: HashMap<u16, Vec<Vec<u8>>> = HashMap::new();
    w.write_tables(&mut out);
    for (i, f) in frames(&mut c, 256).into_iter().enumerate() {
        if f.key && i % 3 == 0 {
            w.write_tables(&mut out);
        }
        let es = if f.video { Es::Video } else { Es::Audio };
        let payload = if f.video {
            f.data
        } else {
            let mut a = Vec::new();
            // A frame ADTS's 13-bit length cannot hold is refused and skipped, as the HLS
            // recorder does; nothing else may be refused, and nothing is written for it.
            if !adts_frame(&asc, &f.data, &mut a) {
                assert!(f.data.len() > ADTS_MAX_PAYLOAD && a.is_empty(), "ADTS refused a small frame");
                continue;
            }
            a
        };
        let dts = u64::from(f.dts) * 90;
        let pts = dts.wrapping_add_signed(i64::from(f.cts) * 90);
        let pes = Pes {
            es,
            pts,
            dts,
            random_access: f.key || !f.video,
            pcr: (f.video == (setup & 1 != 0)).then_some(dts),
            payload: &payload,
        };
        w.write_pes(&mut out, &pes);
        let pid = if f.video { PID_VIDEO } else { PID_AUDIO };
        expected.entry(pid).or_default().push(payload);
    }
    check(&out, &expected);
});

fn check(out: &[u8], expected: &HashMap<u16, Vec<Vec<u8>>>) {
    assert_eq!(out.len() % PACKET_LEN, 0);
    let mut cc: HashMap<u16, u8> = HashMap::new();
    let mut pes: HashMap<u16, Vec<Vec<u8>>> = HashMap::new();
    for p in out.chunks(PACKET_LEN) {
        assert_eq!(p[0], 0x47, "sync byte");
        let pusi = p[1] & 0x40 != 0;
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let afc = (p[3] >> 4) & 3;
        assert!(afc == 1 || afc == 3, "payload always present");
        let counter = p[3] & 0x0f;
        if let Some(prev) = cc.insert(pid, counter) {
            assert_eq!(counter, (prev + 1) & 0x0f, "continuity on pid {pid:#x}");
        }
        let mut at = 4;
        if afc == 3 {
            let af_len = usize::from(p[4]);
            assert!(af_len <= 183);
            at += 1 + af_len;
        }
        assert!(at < PACKET_LEN, "no payload room");
        let payload = &p[at..];
        match pid {
            PID_PAT | PID_PMT => {
                assert!(pusi);
                assert_eq!(payload[0], 0, "pointer field");
                let section = &payload[1..];
                let len = 3 + ((usize::from(section[1] & 0x0f) << 8) | usize::from(section[2]));
                assert!(len <= section.len());
                assert_eq!(crc32_mpeg2(&section[..len]), 0, "PSI CRC");
            }
            _ => {
                let list = pes.entry(pid).or_default();
                if pusi {
                    list.push(Vec::new());
                }
                list.last_mut().expect("PES starts with PUSI").extend_from_slice(payload);
            }
        }
    }
    for (pid, want) in expected {
        let got = pes.get(pid).map_or(&[][..], |v| &v[..]);
        assert_eq!(got.len(), want.len(), "PES count on pid {pid:#x}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!(&g[..3], &[0, 0, 1]);
            let declared = (usize::from(g[4]) << 8) | usize::from(g[5]);
            let header = 9 + usize::from(g[8]);
            assert_eq!(&g[header..], &w[..], "PES payload on pid {pid:#x}");
            if declared == 0 {
                assert_eq!(*pid, PID_VIDEO, "PES length 0 on audio");
                assert!(g.len() - 6 > 0xffff, "PES length 0 though it fits");
            } else {
                assert_eq!(declared, g.len() - 6, "PES_packet_length on pid {pid:#x}");
            }
            if *pid == PID_AUDIO {
                let frame_length =
                    (usize::from(w[3] & 3) << 11) | (usize::from(w[4]) << 3) | usize::from(w[5] >> 5);
                assert_eq!(frame_length, w.len(), "ADTS frame_length");
            }
        }
    }
}
