//! Messages built from the fuzz input go through the chunk encoders (stateful `ChunkEncoder`, with
//! chunk size changes, and the stateless `encode_into`) and back through the decoder: the same
//! messages come out, and `encoded_len` is the number of bytes `encode_into` wrote.
#![no_main]
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use rtmpd::codec::chunk::{encode_into, encoded_len, ChunkEncoder, MAX_CSID, MIN_CSID};
use rtmpd::rtmp::chunk::ChunkDecoder;
use rtmpd::rtmp::control::set_chunk_size_msg;
use rtmpd::rtmp::message::{Message, ABORT, SET_CHUNK_SIZE};
use rtmpd_fuzz::Cursor;

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let stateless = c.u8() & 1 != 0;
    let mut enc = ChunkEncoder::new();
    let mut wire = Vec::new();
    let mut sent = Vec::new();
    let mut chunk_size = 128u32;
    while !c.is_empty() && sent.len() < 64 {
        let op = c.u8();
        if !stateless && op & 0xf0 == 0xf0 {
            // Set Chunk Size: sent with the old size, then used.
            let size = (u32::from(c.u16()) % 9000).max(1);
            let msg = set_chunk_size_msg(size);
            enc.encode(&msg, &mut wire);
            enc.set_chunk_size(size);
            sent.push(msg);
            continue;
        }
        let csid = match op & 3 {
            0 => 2 + u32::from(c.u8() % 62),
            1 => 64 + u32::from(c.u8()),
            2 => 320 + u32::from(c.u16()) % (MAX_CSID - 319),
            _ => 3,
        };
        debug_assert!((MIN_CSID..=MAX_CSID).contains(&csid));
        let timestamp = if op & 4 != 0 { c.u32() } else { u32::from(c.u16()) };
        let mut type_id = c.u8();
        if type_id == SET_CHUNK_SIZE || type_id == ABORT {
            // The decoder acts on these; only the branch above sends them, with valid bodies.
            type_id = 8;
        }
        let stream_id = u32::from(c.u8() & 3);
        let len = usize::from(c.u16()) % 2000;
        let payload = Bytes::copy_from_slice(c.bytes(len));
        let msg = Message {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload,
        };
        if stateless {
            let size = u32::from(op >> 3) * 37 + 1;
            let before = wire.len();
            encode_into(
                csid, timestamp, type_id, stream_id, &msg.payload, size, &mut wire,
            );
            assert_eq!(
                wire.len() - before,
                encoded_len(csid, timestamp, msg.payload.len(), size)
            );
            // The decoder must know the size the chunks were cut at: announce it first.
            if size != chunk_size {
                let mut announce = Vec::new();
                encode_into(
                    2,
                    0,
                    SET_CHUNK_SIZE,
                    0,
                    &size.to_be_bytes(),
                    chunk_size,
                    &mut announce,
                );
                wire.splice(before..before, announce);
                sent.push(set_chunk_size_msg(size));
                chunk_size = size;
            }
        } else {
            enc.encode(&msg, &mut wire);
        }
        sent.push(msg);
    }
    let mut d = ChunkDecoder::new();
    let mut buf = BytesMut::from(&wire[..]);
    let mut got = Vec::new();
    while let Some(m) = d.decode(&mut buf).expect("our own chunks decode") {
        got.push(m);
    }
    assert!(buf.is_empty(), "bytes left after the last message");
    assert_eq!(got.len(), sent.len());
    for (g, s) in got.iter().zip(&sent) {
        assert_eq!(g, s);
    }
});
