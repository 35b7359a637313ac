//! First-run and service use of the command line (issue 15): `--print-config`, files and folders
//! that cannot work exit 2 with one line before anything starts, and a busy port names the option
//! that changes it, once. The Windows binary's own checks are in tools/windows-smoke.sh.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Ran {
    let mut p = Proc::spawn({
        let mut c = Command::new(binary());
        c.args(args);
        c
    });
    let status = p.wait_or_panic(Duration::from_secs(10));
    Ran {
        code: status.code(),
        stdout: p.stdout(),
        stderr: p.stderr(),
    }
}

/// The value printed for `name`, from `name value` lines.
fn setting<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(char::is_whitespace)?;
        (k == name).then(|| v.trim())
    })
}

#[test]
fn print_config_shows_the_effective_settings_and_starts_nothing() {
    let root = TempRoot::new("printcfg");
    let dd = root.join("data");
    let dd_arg = dd.display().to_string();
    // Port 1 needs root and is never free to us: printing must not try to bind it.
    let out = run(&[
        "--rtmp-port",
        "1",
        "--no-hls",
        "--hls-window",
        "6",
        "--data-dir",
        &dd_arg,
        "--print-config",
    ]);
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert!(out.stderr.is_empty(), "stderr: {}", out.stderr);
    let t = &out.stdout;
    assert_eq!(setting(t, "rtmp-port"), Some("1"), "{t}");
    assert_eq!(
        setting(t, "http-port"),
        Some("8501"),
        "defaults included: {t}"
    );
    assert_eq!(setting(t, "no-hls"), Some("true"), "{t}");
    assert_eq!(setting(t, "no-mp4"), Some("false"), "{t}");
    assert_eq!(setting(t, "hls-window"), Some("6"), "{t}");
    assert!(
        setting(t, "data-dir").is_some_and(|v| v.starts_with(&dd_arg)),
        "{t}"
    );
    assert!(!dd.exists(), "--print-config created the data dir");

    let out = run(&["--no-web", "--print-config"]);
    assert_eq!(
        setting(&out.stdout, "no-web"),
        Some("true"),
        "{}",
        out.stdout
    );
    assert_eq!(setting(&out.stdout, "web-port"), None, "{}", out.stdout);

    // A bad value is still a usage error, not a printout.
    let out = run(&["--rtmp-port", "x", "--print-config"]);
    assert_eq!(out.code, Some(2));
    assert!(out.stdout.is_empty());

    // The gateways too; an upstream token stays out of the printout.
    let out = run(&[
        "flv-gateway",
        "8080",
        "http://10.0.0.5:8501/base?token=SECRET",
        "--print-config",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(setting(&out.stdout, "PORT"), Some("8080"));
    assert_eq!(
        setting(&out.stdout, "UPSTREAM"),
        Some("http://10.0.0.5:8501/base")
    );
    assert!(!out.stdout.contains("SECRET"), "{}", out.stdout);
    let root_arg = root.path.display().to_string();
    let out = run(&[
        "file-gateway",
        "127.0.0.1",
        "8123",
        &root_arg,
        "--print-config",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(setting(&out.stdout, "PORT"), Some("8123"));
    assert_eq!(setting(&out.stdout, "HOST"), Some("127.0.0.1"));
}

#[test]
fn unusable_log_and_data_paths_exit_2_with_one_line_and_create_nothing() {
    let root = TempRoot::new("badpaths");
    let file = root.write("a-file", b"x");
    let missing = root.join("missing");
    let in_missing = missing.join("x.log").display().to_string();
    let file_arg = file.display().to_string();
    let folder_arg = root.path.display().to_string();
    let root_arg = folder_arg.clone();
    let cases: Vec<Vec<&str>> = vec![
        vec!["--log-file", &in_missing],
        vec!["--access-log", &in_missing],
        vec!["--access-log", &folder_arg],
        vec!["--data-dir", &file_arg],
        vec![
            "file-gateway",
            "127.0.0.1",
            "0",
            &root_arg,
            "--access-log",
            &in_missing,
        ],
        vec![
            "file-gateway",
            "127.0.0.1",
            "0",
            &root_arg,
            "--log-file",
            &in_missing,
        ],
        vec![
            "flv-gateway",
            "0",
            "http://127.0.0.1:1",
            "--access-log",
            &in_missing,
        ],
    ];
    for args in cases {
        let mut full = vec![
            "--bind",
            "127.0.0.1",
            "--rtmp-port",
            "0",
            "--http-port",
            "0",
            "--webrtc-port",
            "0",
            "--srt-port",
            "0",
        ];
        if args[0].ends_with("gateway") {
            full.clear();
        }
        full.extend(&args);
        if !args[0].ends_with("gateway") {
            full.push("--no-web");
        }
        let out = run(&full);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "{args:?}: want one line, got {:?}",
            out.stderr
        );
        let option = args.iter().find(|a| a.starts_with("--")).unwrap();
        assert!(
            lines[0].contains(option),
            "{args:?}: the line does not name {option}: {}",
            lines[0]
        );
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
        assert!(file.is_file(), "{args:?} touched the file");
    }
}

#[test]
fn a_busy_port_names_the_option_that_changes_it_once() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    for (option, more) in [
        ("--rtmp-port", vec!["--http-port", "0", "--no-web"]),
        ("--http-port", vec!["--rtmp-port", "0", "--no-web"]),
        ("--web-port", vec!["--rtmp-port", "0", "--http-port", "0"]),
        (
            "--webrtc-port",
            vec!["--rtmp-port", "0", "--http-port", "0", "--no-web"],
        ),
    ] {
        // Other UDP listeners off or on a free port: only `option` may collide.
        let mut more = more;
        more.extend(["--srt-port", "0"]);
        if option != "--webrtc-port" {
            more.extend(["--webrtc-port", "0"]);
        }
        let mut args = vec!["--bind", "127.0.0.1", option, &port];
        args.extend(more);
        let out = run(&args);
        assert_eq!(out.code, Some(1), "{option}: {}", out.stderr);
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.contains("cannot listen"))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "{option}: want the error once: {}",
            out.stderr
        );
        assert!(
            lines[0].contains(&port) && lines[0].contains(option),
            "{option}: {}",
            lines[0]
        );
        if option == "--web-port" {
            assert!(lines[0].contains("--no-web"), "{}", lines[0]);
        }
    }
}
