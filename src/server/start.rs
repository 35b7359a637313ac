//! Starting a server process: binding the listeners (a busy port names the option that
//! changes it), opening the certificate, starting the recorders, then handing over to
//! `Server::run`. One function per mode: the origin and the file gateway.

use std::net::SocketAddr;
use std::sync::Arc;

use log::info;
use mio::net::TcpListener;

use super::conn::Listener;
use super::tlsio::{self, Listening};
use super::{hub_config, limits, Server, ServerError, Setup};
use crate::config::OriginConfig;
use crate::http::files::Root;
use crate::origin::llhls;
use crate::origin::Origin;
use crate::record::Recorders;

/// Hook calls at once, and calls waiting for a worker (beyond it a request is refused at once).
const HOOK_WORKERS: usize = 4;
const HOOK_QUEUE: usize = 256;

/// `option` says how to pick another port, so the one error line is all a user needs.
pub(super) fn bind(addr: SocketAddr, what: &str, option: &str) -> Result<TcpListener, ServerError> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        ServerError(format!(
            "cannot listen for {what} on {addr}: {e} (choose another port with {option})"
        ))
    })?;
    limits::deepen_backlog(&listener);
    Ok(listener)
}

pub(super) fn print_listeners(server: &Server) -> Result<(), ServerError> {
    for l in &server.listeners {
        let addr = l
            .socket
            .local_addr()
            .map_err(|e| ServerError(e.to_string()))?;
        info!("{} listening on {addr}", l.label());
    }
    Ok(())
}

/// Runs the origin until Ctrl-C or SIGTERM.
pub fn run_origin(mut cfg: OriginConfig) -> Result<(), ServerError> {
    let nofile = limits::raise_nofile();
    if let Some(n) = nofile {
        info!("open-file limit {n}");
    }
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
        ServerError(format!(
            "cannot create the data dir {}: {e}",
            cfg.data_dir.display()
        ))
    })?;
    if cfg.tls.self_signed {
        tlsio::self_signed(&mut cfg.tls, &cfg.data_dir)?;
    }
    let certs = tlsio::open_certs(&cfg.tls)?;
    let mut listeners = vec![
        Listening::plain(
            bind(
                SocketAddr::new(cfg.bind, cfg.rtmp_port),
                "RTMP",
                "--rtmp-port",
            )?,
            Listener::Rtmp,
        ),
        Listening::plain(
            bind(
                SocketAddr::new(cfg.bind, cfg.http_port),
                "HTTP",
                "--http-port",
            )?,
            Listener::Http,
        ),
    ];
    if let Some(port) = cfg.web_port {
        listeners.push(Listening::plain(
            bind(
                SocketAddr::new(cfg.bind, port),
                "the web port",
                "--web-port, or turn it off with --no-web",
            )?,
            Listener::Web,
        ));
    }
    if let Some(port) = cfg.tls.rtmps_port {
        let addr = SocketAddr::new(cfg.bind, port);
        listeners.push(Listening::tls(
            bind(addr, "RTMPS", "--rtmps-port")?,
            Listener::Rtmp,
        ));
    }
    if let Some(port) = cfg.tls.https_port {
        let addr = SocketAddr::new(cfg.bind, port);
        listeners.push(Listening::tls(
            bind(addr, "HTTPS", "--https-port")?,
            Listener::Http,
        ));
    }
    let pages = match &cfg.web.web_dir {
        Some(dir) => Root::Dir(dir.clone()),
        None => Root::Embedded,
    };
    let setup = Setup {
        mode: "origin",
        viewer: cfg.viewer.clone(),
        roots: vec![pages, Root::Dir(cfg.data_dir.clone())],
        home_page: true,
        data_dir: Some(cfg.data_dir.clone()),
        dir_listing: cfg.web.dir_listing,
        access_log: cfg.web.access_log.clone(),
        remote: match &cfg.record.upload {
            Some(u) => Some(
                crate::record::upload::Remote::new(u).map_err(|e| ServerError(e.to_string()))?,
            ),
            None => None,
        },
    };
    let mut server = Server::new(setup, listeners)?;
    server.set_certs(certs);
    // Repairs what a crash left, then starts the workers; recordings never touch the loop.
    let mut recorders = Recorders::start(cfg.record.clone()).map_err(|e| {
        ServerError(format!(
            "cannot start the recorders in {}: {e}",
            cfg.data_dir.display()
        ))
    })?;
    let waker = server.waker.clone();
    // A held-back recording that drained wakes the loop to read its publisher again.
    recorders.set_wake(Arc::new(move || {
        let _ = waker.wake();
    }));
    server.core = Origin::new(hub_config(&cfg.viewer), Some(recorders));
    server.core.llhls = cfg.llhls.map(llhls::LlHls::new);
    // The audio bridge, Opus to AAC: one worker per Opus stream, waking the loop with AAC.
    {
        let (bitrate, waker) = (cfg.aac_bitrate, server.waker.clone());
        server
            .core
            .hub
            .set_bridge_factory(Box::new(move |key: &crate::media::StreamKey| {
                let w = waker.clone();
                let wake: crate::audio::worker::Wake = Arc::new(move || {
                    let _ = w.wake();
                });
                match crate::audio::aac_worker::AacBridge::start(key.to_string(), bitrate, wake) {
                    Ok(b) => {
                        log::info!("{key}: Opus audio, bridged to AAC for the players and recordings that cannot take Opus");
                        Some(Box::new(b) as Box<dyn crate::hub::bridge::AudioBridge>)
                    }
                    Err(e) => {
                        log::warn!("{key}: no audio bridge to AAC (no thread: {e})");
                        None
                    }
                }
            }));
    }
    server.set_access(&cfg.access, &cfg.limits, nofile)?;
    if let Some(w) = &cfg.webrtc {
        server.open_webrtc(w, cfg.bind)?;
    }
    print_listeners(&server)?;
    if let Some(srt) = &cfg.srt {
        super::srt::open(&mut server, cfg.bind, srt, &cfg.limits)?;
    }
    info!("data dir {}", cfg.data_dir.display());
    server.run()
}

/// Runs the static file gateway until Ctrl-C or SIGTERM.
pub fn run_file_gateway(cfg: crate::config::FileGatewayConfig) -> Result<(), ServerError> {
    let nofile = limits::raise_nofile();
    if let Some(n) = nofile {
        info!("open-file limit {n}");
    }
    let listener = bind(
        SocketAddr::new(cfg.bind, cfg.port),
        "the file gateway",
        "the PORT argument",
    )?;
    let setup = Setup {
        mode: "file-gateway",
        viewer: crate::config::ViewerConfig::default(),
        roots: vec![Root::Dir(cfg.root.clone())],
        home_page: false,
        data_dir: None,
        dir_listing: cfg.web.dir_listing,
        access_log: cfg.web.access_log.clone(),
        remote: None,
    };
    let certs = tlsio::open_certs(&cfg.tls)?;
    let mut listeners = vec![Listening::plain(listener, Listener::Web)];
    if let Some(port) = cfg.tls.https_port {
        let addr = SocketAddr::new(cfg.bind, port);
        listeners.push(Listening::tls(
            bind(addr, "HTTPS", "--https-port")?,
            Listener::Web,
        ));
    }
    let mut server = Server::new(setup, listeners)?;
    server.set_certs(certs);
    server.set_access(&cfg.access, &cfg.limits, nofile)?;
    print_listeners(&server)?;
    let root = std::fs::canonicalize(&cfg.root).unwrap_or(cfg.root);
    info!("file gateway root {}", root.display());
    server.run()
}

impl Server {
    /// Puts the access options and limits in force (the hook workers start here, if any hook
    /// is configured), with one line saying what is checked.
    pub(super) fn set_access(
        &mut self,
        cfg: &crate::config::AccessConfig,
        lim: &crate::config::LimitsConfig,
        nofile: Option<u64>,
    ) -> Result<(), ServerError> {
        let access = crate::access::Access::new(cfg)
            .map_err(|e| ServerError(format!("--auth-file: {e}")))?;
        let hooks = [
            &cfg.on_publish,
            &cfg.on_play,
            &cfg.on_unpublish,
            &cfg.on_stop,
        ];
        let pool = if hooks.iter().any(|h| h.is_some()) {
            let wake = wake_mio(self.waker.clone());
            Some(
                crate::access::hook::HookPool::new(
                    HOOK_WORKERS,
                    HOOK_QUEUE,
                    cfg.hook_timeout,
                    wake,
                )
                .map_err(|e| ServerError(format!("cannot start the hook workers: {e}")))?,
            )
        } else {
            None
        };
        let limits = crate::access::limits::Limits::new(lim, nofile);
        let mut checks = Vec::new();
        for (on, what) in [
            (cfg.publish_token.is_some(), "publish token"),
            (cfg.play_token.is_some(), "play token"),
            (cfg.auth_file.is_some(), "auth file"),
            (cfg.publish_sign_secret.is_some(), "signed publish URLs"),
            (cfg.play_sign_secret.is_some(), "signed play URLs"),
            (cfg.on_publish.is_some(), "publish hook"),
            (cfg.on_play.is_some(), "play hook"),
            (cfg.api_token.is_some(), "API token"),
            (cfg.files_token.is_some(), "files token"),
        ] {
            if on {
                checks.push(what);
            }
        }
        if let Some(n) = access.auth_entries() {
            info!("auth file: {n} entries loaded");
        }
        info!(
            "access: {}; at most {} connections, {} per address",
            if checks.is_empty() {
                "open (anyone may publish and play)".to_string()
            } else {
                checks.join(", ")
            },
            limits.cap(crate::access::limits::Limit::Connections),
            lim.max_per_ip
        );
        let trusted = &lim.trusted_proxies.0;
        if !trusted.is_empty() {
            let list: Vec<String> = trusted.iter().map(|c| c.to_string()).collect();
            info!(
                "trusted proxies {} (never capped per address; {} names the client)",
                list.join(" "),
                if lim.proxy_protocol {
                    "their PROXY header"
                } else {
                    "their X-Forwarded-For/Forwarded header"
                }
            );
        }
        self.core.set_access(access, limits, pool);
        Ok(())
    }
}

/// A `Wake` that wakes a `mio::Poll` (wakes merge, so the loop empties `poll_answer` each time).
fn wake_mio(waker: Arc<mio::Waker>) -> crate::access::hook::Wake {
    Arc::new(move || {
        let _ = waker.wake();
    })
}
