//! AMF3 decoded from arbitrary bytes; a decoded value survives the AMF0 encoding the server uses.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtmpd::amf::{amf0, amf3};

fuzz_target!(|data: &[u8]| {
    if let Ok((v, used)) = amf3::decode(data) {
        assert!(used <= data.len());
        let mut once = Vec::new();
        amf0::encode(&v, &mut once);
        let again = amf0::decode_all(&once).expect("our own encoding decodes");
        assert_eq!(amf0::encode_all(&again), once);
    }
});
