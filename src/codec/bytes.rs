//! A big-endian byte reader over a slice that never reads past its end: every parser of network
//! or file input (AMF, ISO BMFF boxes, Enhanced RTMP headers) reads through it, so the bounds
//! check is written once. Each parser keeps its own error type: `E` says what "too short" is.

use std::marker::PhantomData;

/// The error a parser returns when its input ends early.
pub trait Truncated {
    fn truncated() -> Self;
}

pub struct Reader<'a, E> {
    b: &'a [u8],
    pos: usize,
    error: PhantomData<E>,
}

impl<'a, E: Truncated> Reader<'a, E> {
    pub fn new(b: &'a [u8]) -> Self {
        Reader {
            b,
            pos: 0,
            error: PhantomData,
        }
    }

    /// Bytes read so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }

    /// What is left, without consuming it.
    pub fn rest(&self) -> &'a [u8] {
        &self.b[self.pos..]
    }

    /// The next byte, without consuming it.
    pub fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], E> {
        let end = self.pos.checked_add(n).ok_or_else(E::truncated)?;
        let s = self.b.get(self.pos..end).ok_or_else(E::truncated)?;
        self.pos = end;
        Ok(s)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), E> {
        self.take(n).map(|_| ())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], E> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, E> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, E> {
        self.array().map(u16::from_be_bytes)
    }

    pub fn u24(&mut self) -> Result<u32, E> {
        let [a, b, c] = self.array()?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    pub fn u32(&mut self) -> Result<u32, E> {
        self.array().map(u32::from_be_bytes)
    }

    pub fn u64(&mut self) -> Result<u64, E> {
        self.array().map(u64::from_be_bytes)
    }

    pub fn f64(&mut self) -> Result<f64, E> {
        self.array().map(f64::from_be_bytes)
    }

    pub fn fourcc(&mut self) -> Result<[u8; 4], E> {
        self.array()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Short;
    impl Truncated for Short {
        fn truncated() -> Self {
            Short
        }
    }

    #[test]
    fn fields_in_order_and_never_past_the_end() {
        let b = [1, 0, 2, 0, 0, 3, 0, 0, 0, 4, b'a', b'v', b'c', b'1'];
        let mut r = Reader::<Short>::new(&b);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(2));
        assert_eq!(r.u24(), Ok(3));
        assert_eq!(r.u32(), Ok(4));
        assert_eq!(r.peek(), Some(b'a'));
        assert_eq!(r.fourcc(), Ok(*b"avc1"));
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.u8(), Err(Short));
        assert_eq!(r.take(usize::MAX), Err(Short));
        assert_eq!(r.pos(), b.len());
    }

    #[test]
    fn a_short_read_consumes_nothing() {
        let b = [0u8; 7];
        let mut r = Reader::<Short>::new(&b);
        assert_eq!(r.u64(), Err(Short));
        assert_eq!(r.remaining(), 7);
        assert_eq!(r.f64(), Err(Short));
        assert_eq!(r.rest().len(), 7);
    }
}
