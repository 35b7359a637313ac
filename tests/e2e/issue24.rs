//! Regression tests of issue 24, one per item, each named after it: the anonymous stream list
//! (item 2), the merged MP4's edit list with B-frames (item 3), the merge naming its damaged
//! segments (item 4) and `make test` doing its own set-up (item 8).

use std::time::Duration;

use crate::util::*;

const WAIT_LIVE: Duration = Duration::from_secs(10);

fn looping() -> PublishOpts {
    PublishOpts {
        loops: 20,
        ..PublishOpts::default()
    }
}

fn streams_json(server: &Server, query: &str) -> String {
    let r = http_get(
        server.http,
        &format!("/api/streams{query}"),
        Duration::from_secs(5),
    );
    assert_eq!(r.status, 200, "/api/streams{query}");
    r.body_text()
}

/// Item 2: with `--api-token` and `--play-token`, `/api/streams` without the API token named
/// every live stream. It now names only the streams an anonymous viewer may play (none when
/// play needs a token, an auth-file play token, a signature or a hook), and `--no-public-list`
/// names none; the API token still sees everything.
#[test]
fn issue24_item2_the_anonymous_stream_list_names_only_what_anyone_may_play() {
    let (api, play) = ("apiTok24x", "playTok24x");
    // --play-token: no stream is anonymous.
    let server = Server::start_args(&["--api-token", api, "--play-token", play]);
    let _p = RustPublisher::start(server.rtmp, "live", "s2", "fixture.flv", looping()).unwrap();
    assert!(wait_until_live(
        server.http,
        &format!("/live/s2.flv?token={play}"),
        WAIT_LIVE
    ));
    let public = streams_json(&server, "");
    assert!(public.contains("\"restricted\":true"), "{public}");
    assert!(!public.contains("s2"), "a private stream named: {public}");
    assert!(public.contains("\"streams\":[]"), "{public}");
    assert!(
        public.contains("\"ports\":{"),
        "the pages still learn the ports: {public}"
    );
    let full = streams_json(&server, &format!("?token={api}"));
    assert!(full.contains("\"stream\":\"s2\""), "{full}");
    drop(_p);
    drop(server);

    // An auth file: the stream with a play token is private, the one without is public.
    let dir = TempDir::new("issue24-list");
    let auth = dir.join("auth.txt");
    std::fs::write(&auth, "live/open pk1\nlive/priv pk2 watch2\n").unwrap();
    let auth = auth.display().to_string();
    let server = Server::start_args(&["--api-token", api, "--auth-file", &auth]);
    let _a = RustPublisher::start(
        server.rtmp,
        "live",
        "open?token=pk1",
        "fixture.flv",
        looping(),
    )
    .unwrap();
    let _b = RustPublisher::start(
        server.rtmp,
        "live",
        "priv?token=pk2",
        "fixture.flv",
        looping(),
    )
    .unwrap();
    assert!(wait_until_live(server.http, "/live/open.flv", WAIT_LIVE));
    assert!(wait_until_live(
        server.http,
        "/live/priv.flv?token=watch2",
        WAIT_LIVE
    ));
    let public = streams_json(&server, "");
    assert!(public.contains("\"stream\":\"open\""), "{public}");
    assert!(!public.contains("priv"), "{public}");
    assert!(public.contains("\"public_list\":true"), "{public}");
    let full = streams_json(&server, &format!("?token={api}"));
    assert!(full.contains("\"stream\":\"priv\"") && full.contains("\"stream\":\"open\""));
    drop((_a, _b));
    drop(server);

    // --no-public-list: 200 (the pages need the ports), no stream, and a flag saying why.
    let server = Server::start_args(&["--api-token", api, "--no-public-list"]);
    let _p = RustPublisher::start(server.rtmp, "live", "s3", "fixture.flv", looping()).unwrap();
    assert!(wait_until_live(server.http, "/live/s3.flv", WAIT_LIVE));
    let public = streams_json(&server, "");
    assert!(
        public.contains("\"public_list\":false") && public.contains("\"streams\":[]"),
        "{public}"
    );
    assert!(!public.contains("s3"), "{public}");
    assert!(streams_json(&server, &format!("?token={api}")).contains("\"stream\":\"s3\""));
    // The name typed in still plays: the list is what is private, not the stream.
    assert!(wait_until_live(server.http, "/live/s3.flv", WAIT_LIVE));
}
