"""Writes the seed corpora of the fuzz targets into seeds/TARGET/ from tests/data (the FFmpeg
RTMP byte logs, the FLV fixtures) and small hand-made inputs (AMF, HTTP, WebSocket, fMP4).
Run by seed.sh; deterministic, so the committed seeds can be checked against it."""
import os, struct, sys

ROOT = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(ROOT, "..", "tests", "data")
OUT = os.path.join(ROOT, "seeds")
SEP = b"#SEP#"
HS = 1 + 2 * 1536


def read(name):
    with open(os.path.join(DATA, name), "rb") as f:
        return f.read()


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def flv_tags(flv):
    """(type, dts, body) of each tag of an FLV file."""
    pos = struct.unpack(">I", flv[5:9])[0] + 4
    while pos + 11 <= len(flv):
        t = flv[pos] & 0x1F
        size = int.from_bytes(flv[pos + 1:pos + 4], "big")
        dts = int.from_bytes(flv[pos + 4:pos + 7], "big") | flv[pos + 7] << 24
        yield t, dts, flv[pos + 11:pos + 11 + size]
        pos += 11 + size + 4


def box(kind, body):
    return struct.pack(">I", 8 + len(body)) + kind + body


def full(kind, version, flags, body):
    return box(kind, struct.pack(">I", version << 24 | flags) + body)


def fmp4(avcc, asc):
    """An init segment and two media segments, shaped as mux::fmp4 writes them."""
    def trak(tid, audio, timescale, entry):
        tkhd = full(b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, tid, 0, 0) + bytes(52) + struct.pack(">II", 320 << 16, 240 << 16))
        mdhd = full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, 0x55C4, 0))
        hdlr = full(b"hdlr", 0, 0, struct.pack(">I", 0) + (b"soun" if audio else b"vide") + bytes(12) + b"h\0")
        stsd = full(b"stsd", 0, 0, struct.pack(">I", 1) + entry)
        stbl = box(b"stbl", stsd + full(b"stts", 0, 0, bytes(4)) + full(b"stsc", 0, 0, bytes(4)) + full(b"stsz", 0, 0, bytes(8)) + full(b"stco", 0, 0, bytes(4)))
        return box(b"trak", tkhd + box(b"mdia", mdhd + hdlr + box(b"minf", stbl)))
    avc1 = box(b"avc1", bytes(6) + struct.pack(">H", 1) + bytes(16) + struct.pack(">HH", 320, 240) + bytes(50) + box(b"avcC", avcc))
    mp4a = box(b"mp4a", bytes(6) + struct.pack(">H", 1) + bytes(8) + struct.pack(">HHI", 2, 16, 0) + struct.pack(">I", 44100 << 16) + full(b"esds", 0, 0, asc))
    mvhd = full(b"mvhd", 0, 0, struct.pack(">IIII", 0, 0, 1000, 0) + bytes(80) + struct.pack(">I", 3))
    trex = lambda tid: full(b"trex", 0, 0, struct.pack(">IIIII", tid, 1, 0, 0, 0))
    init = box(b"ftyp", b"iso5" + struct.pack(">I", 0x200) + b"iso5iso6mp41") + box(b"moov", mvhd + trak(1, False, 90000, avc1) + trak(2, True, 44100, mp4a) + box(b"mvex", trex(1) + trex(2)))
    segs = []
    for seq in (1, 2):
        samples = [(3600, 40, 0x02000000 if i == 0 else 0x01010000, 1800 * (i % 2)) for i in range(3)]
        audio = [(1024, 20, 0x02000000, 0) for _ in range(4)]
        def traf(tid, t, ss, cto):
            body = struct.pack(">I", len(ss)) + struct.pack(">I", 0)
            for s in ss:
                body += struct.pack(">IIIi", *s) if cto else struct.pack(">III", *s[:3])
            trun = full(b"trun", 1 if cto else 0, 0x701 | (0x800 if cto else 0), body)
            return box(b"traf", full(b"tfhd", 0, 0x20000, struct.pack(">I", tid)) + full(b"tfdt", 1, 0, struct.pack(">Q", t)) + trun)
        moof = box(b"moof", full(b"mfhd", 0, 0, struct.pack(">I", seq)) + traf(1, (seq - 1) * 10800, samples, True) + traf(2, (seq - 1) * 4096, audio, False))
        # Patch the data offsets: moof size + mdat header, then after the video run.
        moof = bytearray(moof)
        vsize = sum(s[1] for s in samples)
        first = moof.find(b"trun")
        moof[first + 12:first + 16] = struct.pack(">I", len(moof) + 8)
        second = moof.find(b"trun", first + 4)
        moof[second + 12:second + 16] = struct.pack(">I", len(moof) + 8 + vsize)
        payload = bytes(range(256)) * 2
        mdat = box(b"mdat", payload[:vsize + sum(a[1] for a in audio)])
        segs.append(box(b"styp", b"msdh" + bytes(4) + b"msdhmsix") + bytes(moof) + mdat)
    return init, segs


def amf0_str(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def main():
    publish, play = read("ffmpeg_publish.bin"), read("ffmpeg_play.bin")
    fixture = read("fixture.flv")
    steps = b"\xff\xff\xff\xff"
    put("rtmp_session", "publish", b"\x00" + steps + publish)
    put("rtmp_session", "publish_split", b"\x00" + b"\x00\x07\x3f\xc8" + publish)
    put("rtmp_session", "play", b"\x00" + steps + play)
    put("rtmp_session", "publish_after_handshake", b"\x01" + steps + publish[HS:])
    put("rtmp_session", "play_refused", b"\x03" + steps + play[HS:])
    put("chunk_decoder", "publish", b"\x00" + steps + publish[HS:])
    put("chunk_decoder", "play", b"\x01" + b"\x00\x10\x7f\x03" + play[HS:])
    put("chunk_roundtrip", "a", b"\x00" + bytes(range(200)))
    put("chunk_roundtrip", "b", b"\x01" + bytes(range(255, 0, -1)))
    put("chunk_roundtrip", "c", b"\x00\xf0\x10\x00" + bytes(range(100)) * 3)

    connect = (b"\x02" + amf0_str("connect") + b"\x00" + struct.pack(">d", 1) + b"\x03" + amf0_str("app") + b"\x02" + amf0_str("live")
               + amf0_str("tcUrl") + b"\x02" + amf0_str("rtmp://127.0.0.1/live") + amf0_str("fpad") + b"\x01\x00" + b"\x00\x00\x09")
    meta = (b"\x02" + amf0_str("onMetaData") + b"\x08" + struct.pack(">I", 2) + amf0_str("width") + b"\x00" + struct.pack(">d", 320)
            + amf0_str("encoder") + b"\x0c" + struct.pack(">I", 3) + b"Lav" + b"\x00\x00\x09"
            + b"\x0a" + struct.pack(">I", 2) + b"\x05\x06" + b"\x0b" + struct.pack(">dh", 1.5e12, 0) + b"\x0f" + struct.pack(">I", 3) + b"<x>"
            + b"\x10" + amf0_str("Cls") + amf0_str("a") + b"\x07\x00\x00" + b"\x00\x00\x09")
    amf3 = (b"\x0a\x0b\x01" + b"\x03a" + b"\x04\x7f" + b"\x03b" + b"\x06\x07abc" + b"\x03c" + b"\x09\x05\x01\x02\x03" + b"\x03d" + b"\x08\x01" + struct.pack(">d", 1e12) + b"\x01")
    put("amf0", "connect", connect)
    put("amf0", "metadata", meta)
    put("amf0", "switch", b"\x11" + amf3 + b"\x11\x06\x00")
    put("amf3", "object", amf3)
    put("amf3", "array", b"\x09\x07\x03k\x04\x01\x01\x04\x02\x06\x05hi\x0e\x00\x05\x01\xff" + b"\x07\x05" + b"<a/>")

    get = b"GET /live/stream.flv?token=x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    put("http_request", "ws_upgrade", get)
    put("http_request", "pipelined", b"GET /index.html HTTP/1.1\r\nHost: h\r\n\r\nHEAD /hls/live/s/index.m3u8 HTTP/1.1\r\nRange: bytes=0-99\r\n\r\nGET /api/streams HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    put("http_request", "traversal", b"GET /flv/%2e%2e/..%2f/a%20b/./c/ HTTP/1.1\r\nHost: h\r\n\r\nGET http://h/C:/x HTTP/1.1\r\n\r\n")
    put("http_request", "framing", b"POST /x HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 46\r\n\r\n")
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    put("proxy_header", "v1", b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 1935\r\n\x03")
    put("proxy_header", "v1_6", b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\nGET / HTTP/1.1\r\n")
    put("proxy_header", "v1_unknown", b"PROXY UNKNOWN\r\n")
    put("proxy_header", "v2_4", sig + b"\x21\x11\x00\x10" + bytes([203, 0, 113, 7, 198, 51, 100, 1]) + b"\x9c\x40\x07\x8f" + b"\x04\x00\x01\x00\x16")
    put("proxy_header", "v2_6", sig + b"\x21\x21\x00\x24" + bytes(range(32)) + b"\x00\x01\x01\xbb")
    put("proxy_header", "v2_local", sig + b"\x20\x00\x00\x00")
    put("proxy_header", "forwarded", b"1.2.3.4, 203.0.113.7:5000, 10.0.0.2\nfor=192.0.2.60;proto=http, for=\"[2001:db9::17]:4711\", for=_hidden")
    for i, text in enumerate([b"bytes=0-99", b"bytes=-500", b"bytes=100-", b"Sun, 06 Nov 1994 08:49:37 GMT", b"Sunday, 06-Nov-94 08:49:37 GMT", b"Sun Nov  6 08:49:37 1994", b'W/"1f-2a", "x"']):
        put("http_conditional", "c%d" % i, struct.pack(">QBQ", 1000 + i, i, 9000 * i) + text)
    ping = b"\x89\x84\x01\x02\x03\x04" + bytes(b ^ k for b, k in zip(b"ping", b"\x01\x02\x03\x04"))
    put("ws_session", "ping_close", b"\x00" + steps + ping + b"\x81\x82\x00\x00\x00\x00hi" + b"\x88\x82\x00\x00\x00\x00\x03\xe8")
    put("ws_session", "fragmented", b"\x01" + b"\x00\x01\x02\x03" + b"\x01\x81\x00\x00\x00\x00a" + b"\x80\x81\x00\x00\x00\x00b" + ping)

    head = b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n"
    put("gateway_response", "close_delimited", steps + head + b"\r\n" + fixture[:8000])
    put("gateway_response", "length", steps + head + b"Content-Length: 3000\r\n\r\n" + fixture[:3000])
    body = fixture[:5000]
    chunked = b"".join(b"%x\r\n" % len(body[i:i + 700]) + body[i:i + 700] + b"\r\n" for i in range(0, len(body), 700)) + b"0\r\n\r\n"
    put("gateway_response", "chunked", b"\x00\x13\x40\x05" + head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
    put("gateway_response", "redirect", steps + b"http://127.0.0.1:8501/base?token=1\r\nHTTP/1.1 302 Found\r\nLocation: /live/s.flv\r\n\r\n")
    put("flv_demux", "fixture_head", steps + fixture[:24000])
    put("flv_demux", "fixture_split", b"\x00\x0a\x3f\x7e" + fixture[:6000])
    put("flv_demux", "audio_head", steps + read("fixture_audio.flv")[:4000])
    avcc = asc = None
    for t, dts, body in flv_tags(fixture):
        if t == 9 and body[:2] == b"\x17\x00" and avcc is None:
            avcc = body[5:]
        if t == 10 - 2 and body[:2] == b"\xaf\x00" and asc is None:
            asc = body[2:]
    put("codec_config", "avcc", b"\x40" + avcc)
    put("codec_config", "sps", b"\x00" + avcc[8:8 + struct.unpack(">H", avcc[6:8])[0]])
    put("codec_config", "asc", b"\x00" + asc)
    put("codec_config", "he_aac", b"\x00" + b"\x2b\x92\x08\x00")
    for t, dts, body in list(flv_tags(fixture))[:6]:
        if t == 9 and body[1] == 1:
            put("codec_config", "avcc_frame", b"\x41" + body[5:5 + 3000])
            break

    put("hls_playlist", "ours", b"#EXTM3U\n#EXT-X-VERSION:3\n#RTMPD-SESSION-START:1764550000000\n#EXT-X-PROGRAM-DATE-TIME:2026-11-24T01:08:29.123Z\n#EXTINF:4.0,\nsegment_1.ts\n#EXT-X-ENDLIST\n")
    put("hls_playlist", "pdt", b"2026-11-24T01:08:29.123Z")

    init, segs = fmp4(avcc, asc)
    put("mp4_merge", "two_segments", init + SEP + segs[0] + SEP + segs[1])
    put("mp4_merge", "truncated", init + SEP + segs[0] + SEP + segs[1][:len(segs[1]) - 30])
    put("bmff_reader", "init", init)
    put("bmff_reader", "segment", segs[0])

    # Frame sequences for the muxers: flag, dts step, cts, length, payload (see rtmpd_fuzz::frames).
    seq = b""
    for i in range(40):
        video = i % 3 != 2
        flags = (1 if video else 0) | (2 if i % 12 == 0 else 0)
        payload = bytes((i * 7 + j) & 0xFF for j in range(30 + i))
        seq += bytes([flags]) + struct.pack(">H", 33 if video else 23) + bytes([i % 3]) + bytes([len(payload)]) + payload
    put("ts_mux", "av", b"\x03" + seq)
    put("ts_mux", "big_frames", b"\x01" + b"\x0b\x00\x00\x00\x00\x60\x00" + bytes(range(256)) + b"\x08\x00\x20\x00\x10\x00" + bytes(64))
    put("fmp4_mux", "av", b"\x0b\x00\x64" + seq)
    put("fmp4_mux", "audio_only", b"\x0a\x00\x10" + seq)
    # SRT datagrams for srt_listener: [length / 8, flags (bit 0: aim at the connection, bits 1-7:
    # milliseconds to advance), datagram]*. Data packets from the connection's ISN (0x7FFFFF00),
    # one with a gap, then an ACK, a NAK, an ACKACK, a DROPREQ, a keep-alive and a shutdown.
    srt = b""
    for i in [0, 1, 2, 4, 5, 3]:
        d = struct.pack(">IIII", 0x7FFFFF00 + i, 0xC0000001 + i, 1000 * i, 0) + bytes(range(40))
        srt += bytes([len(d) // 8, 1 | 2]) + d
    for kind, body in [(2, struct.pack(">IIIIIIII", 0x7FFFFF06, 100, 50, 8000, 1, 1, 1, 0)),
                       (3, struct.pack(">II", 0xFFFFFF01, 0x7FFFFF03)),
                       (6, b"\0" * 8), (7, struct.pack(">II", 0x7FFFFF00, 0x7FFFFF02)),
                       (1, b"\0" * 8), (5, b"\0" * 8)]:
        d = struct.pack(">IIII", 0x80000000 | kind << 16, 1, 5000, 0) + body
        srt += bytes([len(d) // 8, 1 | 20]) + d
    put("srt_listener", "session", srt)

    # MPEG-TS from FFmpeg (tests/data/ts): the tables and first PESs of each, whole and split.
    for name in ["h264_aac", "hevc_aac", "h264_mp3", "h264_ac3", "h264_opus", "eac3", "ac3_dvb"]:
        put("ts_demux", name, steps + read("ts/%s.ts" % name)[:188 * 32])
    put("ts_demux", "h264_aac_split", b"\x00\xb3\x07\x5d" + read("ts/h264_aac.ts")[:188 * 16])

    # WebRTC: a browser-like WHEP offer, a STUN binding request with USERNAME, ICE-TCP frames.
    offer = "\r\n".join([
        "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "c=IN IP4 0.0.0.0", "a=mid:0", "a=recvonly",
        "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass", "a=rtcp-mux",
        "a=rtpmap:96 H264/90000", "a=fmtp:96 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        "a=rtcp-fb:96 nack", "a=rtcp-fb:96 nack pli", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=mid:1", "a=recvonly",
        "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass", "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10;useinbandfec=1", "",
    ])
    put("webrtc_input", "offer", offer.encode())
    user = b"srv1:brws"
    attr = struct.pack(">HH", 6, len(user)) + user + b"\x00" * (-len(user) % 4)
    stun = struct.pack(">HH", 1, len(attr)) + b"\x21\x12\xa4\x42" + bytes(range(12)) + attr
    put("webrtc_input", "stun_request", stun)
    put("webrtc_input", "tcp_frames", struct.pack(">H", len(stun)) + stun + struct.pack(">H", 3) + b"abc")


if __name__ == "__main__":
    main()
