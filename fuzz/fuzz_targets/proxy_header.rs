//! PROXY protocol headers (v1, v2) and forwarded-for headers from arbitrary bytes: no panic; a
//! header takes no more than the buffer and the bound, every shorter prefix of it asks for more,
//! and the forwarded-for walk answers for any header text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtmpd::access::proxy_protocol::{self as pp, Parsed};
use rtmpd::access::trusted::Trusted;

fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Done(h, n)) = pp::parse(data) {
        assert!(n <= data.len() && n <= pp::MAX_HEADER);
        assert!(h.version == 1 || h.version == 2);
        for cut in [0, n / 2, n.saturating_sub(1)] {
            if cut < n {
                assert_eq!(pp::parse(&data[..cut]), Ok(Parsed::Partial), "cut {cut} of {n}");
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let trusted = Trusted(vec!["10.0.0.0/8".parse().unwrap(), "2001:db8::/32".parse().unwrap()]);
        let (xff, fwd) = text.split_once('\n').unwrap_or((text, ""));
        let headers = [("X-Forwarded-For", xff), ("Forwarded", fwd)];
        let _ = trusted.forwarded_client(headers.iter().copied());
        let _ = trusted.forwarded_client(headers[1..].iter().copied());
        let _ = text.parse::<rtmpd::access::trusted::Cidr>();
    }
});
