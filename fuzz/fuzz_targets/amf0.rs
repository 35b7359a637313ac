//! AMF0 (with the AMF3 switch marker) decoded from arbitrary bytes; whatever decodes re-encodes to
//! bytes that decode again to the same encoding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rtmpd::amf::amf0;

fuzz_target!(|data: &[u8]| {
    let _ = amf0::decode(data);
    let _ = rtmpd::rtmp::message::decode_message(17, data);
    if let Ok(values) = amf0::decode_all(data) {
        let once = amf0::encode_all(&values);
        let again = amf0::decode_all(&once).expect("our own encoding decodes");
        assert_eq!(amf0::encode_all(&again), once);
    }
});
