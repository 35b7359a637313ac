//! Helpers shared by the fuzz targets: a cursor that turns fuzz bytes into numbers and slices
//! (never failing: an exhausted input reads as zeros), input splitting for targets that take several
//! files, and the frame sequences the muxer targets are fed. No assertions about the crate live here.

/// Separates the parts of a multi-file input (init segment, media segments, ...). Seeds use it, and
/// libFuzzer's comparison tracing finds it on its own.
pub const SEP: &[u8] = b"#SEP#";

/// Splits `data` on `SEP`.
pub fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(SEP.len()).position(|w| w == SEP) {
        parts.push(&rest[..i]);
        rest = &rest[i + SEP.len()..];
    }
    parts.push(rest);
    parts
}

/// Reads numbers and slices from the front of the fuzz input.
pub struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Cursor<'a> {
        Cursor { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn u8(&mut self) -> u8 {
        let (first, rest) = self.data.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.data = rest;
        first
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }

    /// Up to `n` bytes (fewer when the input ends).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Feeds `data` to `sink` in pieces whose sizes cycle through `steps` (1-based, so a step byte of 0
/// means one byte at a time): every split point a socket could produce, chosen by the fuzzer.
pub fn feed_in_pieces(data: &[u8], steps: &[u8], mut sink: impl FnMut(&[u8]) -> bool) {
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let step = steps.get(i % steps.len().max(1)).map_or(rest.len(), |s| {
            // Small steps mostly; 0xff means "all the rest" so whole-buffer paths are covered too.
            if *s == 0xff {
                rest.len()
            } else {
                usize::from(*s) + 1
            }
        });
        let n = step.min(rest.len());
        if !sink(&rest[..n]) {
            return;
        }
        rest = &rest[n..];
        i += 1;
    }
}

/// One media frame for the muxer targets, timestamps as RTMP carries them (ms, 32-bit wrapping).
#[derive(Clone, Debug)]
pub struct FuzzFrame {
    pub video: bool,
    pub dts: u32,
    pub cts: i32,
    pub key: bool,
    pub data: Vec<u8>,
}

/// Largest payload a fuzz frame gets: above 64 KiB so the PES and ADTS length fields overflow.
pub const MAX_FRAME: usize = 200_000;

/// Builds up to `max` frames: per frame a flag byte (bit 0 video, bit 1 key, bit 2 absolute time,
/// bit 3 large payload), a 16-bit dts step (or a 32-bit absolute dts), an 8-bit cts and a length;
/// the payload cycles through the input bytes that follow, so a short input can make a large frame.
pub fn frames(c: &mut Cursor, max: usize) -> Vec<FuzzFrame> {
    let mut out = Vec::new();
    let mut dts = 0u32;
    while !c.is_empty() && out.len() < max {
        let flags = c.u8();
        dts = if flags & 4 != 0 {
            c.u32()
        } else {
            dts.wrapping_add(u32::from(c.u16()))
        };
        let cts = i32::from(c.u8() as i8) * 8;
        let len = if flags & 8 != 0 {
            (usize::from(c.u16()) << 2) % MAX_FRAME
        } else {
            usize::from(c.u8())
        };
        let src = c.bytes(len);
        let data = if src.is_empty() {
            vec![flags; len]
        } else {
            src.iter().copied().cycle().take(len).collect()
        };
        out.push(FuzzFrame {
            video: flags & 1 != 0,
            dts,
            cts,
            key: flags & 2 != 0,
            data,
        });
    }
    out
}
