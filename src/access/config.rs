//! The access-control and limit settings (issue 12) as `crate::config` fills them from the
//! command line: tokens, auth file, signing secrets, hooks, API and files tokens, connection and
//! stream caps. The options, their `--help` rows and validation are `config::access`.

use std::path::PathBuf;
use std::time::Duration;

/// Who may publish, play, fetch recordings and read the API (SPEC section 6). All off by default.
#[derive(Clone, Debug)]
pub struct AccessConfig {
    /// `--publish-token`: `?token=T` on the stream name, the connect app/tcUrl or the URL.
    pub publish_token: Option<super::Secret>,
    /// `--play-token`.
    pub play_token: Option<super::Secret>,
    /// `--auth-file`: per-stream tokens, re-read when it changes.
    pub auth_file: Option<PathBuf>,
    /// `--publish-sign-secret` (or `--sign-secret`): signed, expiring publish URLs.
    pub publish_sign_secret: Option<super::Secret>,
    /// `--play-sign-secret` (or `--sign-secret`): signed, expiring play URLs.
    pub play_sign_secret: Option<super::Secret>,
    pub on_publish: Option<super::hook::HookUrl>,
    pub on_play: Option<super::hook::HookUrl>,
    pub on_unpublish: Option<super::hook::HookUrl>,
    pub on_stop: Option<super::hook::HookUrl>,
    /// `--hook-timeout`: a hook call's whole budget; no answer in time refuses.
    pub hook_timeout: Duration,
    /// `--api-token`: protects `/api/*` and `/metrics`.
    pub api_token: Option<super::Secret>,
    /// `--files-token`: protects recordings on the static service.
    pub files_token: Option<super::Secret>,
    /// Without `--no-public-list`, `/api/streams` without the API token names the live streams an
    /// anonymous viewer may play; with it, none.
    pub public_list: bool,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            publish_token: None,
            play_token: None,
            auth_file: None,
            publish_sign_secret: None,
            play_sign_secret: None,
            on_publish: None,
            on_play: None,
            on_unpublish: None,
            on_stop: None,
            hook_timeout: Duration::from_secs(3),
            api_token: None,
            files_token: None,
            public_list: true,
        }
    }
}

/// Caps that keep one client from crowding out the rest; 0 means no cap (except connections).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsConfig {
    /// `--max-connections`; `None`: three quarters of the open-file limit
    /// (`access::limits::max_connections`).
    pub max_connections: Option<usize>,
    pub max_per_ip: usize,
    pub max_streams: usize,
    pub max_players_per_stream: usize,
    pub max_publishers_per_ip: usize,
    /// `--max-waiting-per-stream`: players of one stream that has no publisher yet.
    pub max_waiting_per_stream: usize,
    /// `--trusted-proxy CIDR` (repeatable): never capped per address; their PROXY headers and
    /// forwarded-for headers name the client.
    pub trusted_proxies: super::trusted::Trusted,
    /// `--proxy-protocol`: connections from a trusted proxy start with a PROXY header.
    pub proxy_protocol: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: None,
            max_per_ip: 200,
            max_streams: 1000,
            max_players_per_stream: 0,
            max_publishers_per_ip: 32,
            max_waiting_per_stream: 1000,
            trusted_proxies: super::trusted::Trusted::default(),
            proxy_protocol: false,
        }
    }
}
