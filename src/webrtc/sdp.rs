//! What an SDP offer offers, read from its text for the 400's reason ("offer: VP8, H.264"):
//! the codec names of its audio and video sections, in order, without duplicates. str0m does
//! the real parsing and negotiation; this only reads `m=` and `a=rtpmap:` lines, bounded by
//! the offer size limit checked before.

/// The offer's codecs per kind, as written in `a=rtpmap` (rtx, red, ulpfec and the like
/// left out: they carry no media of their own).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfferedCodecs {
    pub has_video: bool,
    pub has_audio: bool,
    pub video: Vec<String>,
    pub audio: Vec<String>,
}

impl OfferedCodecs {
    pub fn describe_video(&self) -> String {
        describe(&self.video, self.has_video)
    }

    pub fn describe_all(&self) -> String {
        let mut all = self.video.clone();
        all.extend(self.audio.iter().cloned());
        describe(&all, self.has_video || self.has_audio)
    }
}

fn describe(names: &[String], has_section: bool) -> String {
    match (names.is_empty(), has_section) {
        (false, _) => names.join(", "),
        (true, true) => "no codec".into(),
        (true, false) => "no such media section".into(),
    }
}

/// Scans an offer's `m=` and `a=rtpmap:` lines.
pub fn offered_codecs(offer: &str) -> OfferedCodecs {
    #[derive(PartialEq)]
    enum Section {
        Session,
        Video,
        Audio,
        Other,
    }
    let mut section = Section::Session;
    let mut out = OfferedCodecs::default();
    for line in offer.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            section = match m.split(' ').next() {
                Some("video") => {
                    out.has_video = true;
                    Section::Video
                }
                Some("audio") => {
                    out.has_audio = true;
                    Section::Audio
                }
                _ => Section::Other,
            };
            continue;
        }
        let Some(map) = line.strip_prefix("a=rtpmap:") else {
            continue;
        };
        let Some(name) = map.split(' ').nth(1).and_then(|e| e.split('/').next()) else {
            continue;
        };
        let name = display_name(name);
        if matches!(
            name.as_str(),
            "rtx" | "red" | "ulpfec" | "flexfec-03" | "CN" | "telephone-event"
        ) {
            continue;
        }
        let list = match section {
            Section::Video => &mut out.video,
            Section::Audio => &mut out.audio,
            _ => continue,
        };
        if !list.contains(&name) && list.len() < 32 {
            list.push(name);
        }
    }
    out
}

/// "H264" -> "H.264", "opus" -> "Opus"; other names as written (bounded).
fn display_name(encoding: &str) -> String {
    match encoding.to_ascii_uppercase().as_str() {
        "H264" => "H.264".into(),
        "H265" => "H.265".into(),
        "OPUS" => "Opus".into(),
        "AV1" | "AV1X" => "AV1".into(),
        _ => encoding.chars().take(32).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_per_section() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=rtpmap:111 opus/48000/2\r\n\
                   a=rtpmap:63 red/48000/2\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 98\r\n\
                   a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=rtpmap:98 H264/90000\r\n\
                   a=rtpmap:99 H264/90000\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
        let o = offered_codecs(sdp);
        assert_eq!(o.video, ["VP8", "H.264"]);
        assert_eq!(o.audio, ["Opus"]);
        assert_eq!(o.describe_video(), "VP8, H.264");
        assert_eq!(o.describe_all(), "VP8, H.264, Opus");
        let none = offered_codecs("v=0\r\nm=audio 9 RTP/AVP 0\r\n");
        assert_eq!(none.describe_video(), "no such media section");
        assert_eq!(none.describe_all(), "no codec");
    }
}
