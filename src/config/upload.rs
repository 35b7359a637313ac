//! `--upload s3://bucket/prefix` and its options: the options, their parsing (credentials from the AWS
//! environment variables or a credentials file) into `record::upload::UploadConfig`, and their
//! `--print-config` lines (the secret never printed).

use super::retention::parse_size;
use super::ConfigError;
use crate::record::upload::{self, UploadConfig};
use getopts::Options;
use std::time::Duration;

pub fn options(opts: &mut Options) {
    opts.optopt(
        "",
        "upload",
        "copy every recording file, once final, to an S3-compatible bucket (credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, or --upload-credentials) [off]",
        "s3://BUCKET/PREFIX",
    );
    opts.optopt(
        "",
        "upload-endpoint",
        "the S3 endpoint (MinIO, Garage, R2, ...; path-style URLs) [https://s3.REGION.amazonaws.com]",
        "URL",
    );
    opts.optopt(
        "",
        "upload-region",
        "the bucket's region [AWS_REGION, AWS_DEFAULT_REGION, else us-east-1]",
        "REGION",
    );
    opts.optopt(
        "",
        "upload-credentials",
        "an AWS credentials file (aws_access_key_id, aws_secret_access_key in [default] or AWS_PROFILE's section) instead of the environment",
        "FILE",
    );
    opts.optopt(
        "",
        "upload-delete-local",
        "delete the local copy of a stored media file of a finished session once it is AGE old (0, 90s, 30m, 12h, 7d) [keep]",
        "AGE",
    );
    opts.optopt("", "upload-workers", "upload threads [2]", "N");
    opts.optopt(
        "",
        "upload-part-size",
        "files larger than this go up as multipart uploads in parts of this size (at least 5M) [16M]",
        "SIZE",
    );
}

/// `0`, `90s`, `30m`, `12h`, `7d` (a bare number is seconds).
pub fn parse_age(s: &str) -> Option<Duration> {
    let t = s.trim();
    let (digits, unit) = match t.chars().last()? {
        's' => (&t[..t.len() - 1], 1),
        'm' => (&t[..t.len() - 1], 60),
        'h' => (&t[..t.len() - 1], 3600),
        'd' => (&t[..t.len() - 1], 86_400),
        _ => (t, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Duration::from_secs(
        digits.parse::<u64>().ok()?.checked_mul(unit)?,
    ))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub fn config(m: &getopts::Matches) -> Result<Option<UploadConfig>, ConfigError> {
    let err = |s: String| Err(ConfigError(s));
    let Some(url) = m.opt_str("upload") else {
        for o in [
            "upload-endpoint",
            "upload-region",
            "upload-credentials",
            "upload-delete-local",
            "upload-workers",
            "upload-part-size",
        ] {
            if m.opt_present(o) {
                return err(format!("--{o} needs --upload s3://BUCKET/PREFIX"));
            }
        }
        return Ok(None);
    };
    let Some((bucket, prefix)) = upload::parse_s3_url(&url) else {
        return err(format!(
            "--upload: '{url}' is not s3://BUCKET/PREFIX (a bucket name of 3-63 lowercase letters, digits, '-' or '.')"
        ));
    };
    let region = m
        .opt_str("upload-region")
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    let (endpoint, path_style) = match m.opt_str("upload-endpoint") {
        Some(e) => {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return err(format!(
                    "--upload-endpoint: '{e}' is not an http:// or https:// URL"
                ));
            }
            (e, true)
        }
        None => (format!("https://s3.{region}.amazonaws.com"), false),
    };
    let (access_key, secret_key, session_token) = match m.opt_str("upload-credentials") {
        Some(file) => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| ConfigError(format!("--upload-credentials {file}: {e}")))?;
            let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
            upload::parse_credentials_file(&text, &profile).ok_or_else(|| {
                ConfigError(format!(
                    "--upload-credentials {file}: no aws_access_key_id and aws_secret_access_key in [{profile}]"
                ))
            })?
        }
        None => match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(k), Some(s)) => (k, s, env("AWS_SESSION_TOKEN")),
            _ => {
                return err(
                    "--upload: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or --upload-credentials FILE)"
                        .into(),
                )
            }
        },
    };
    let delete_local_after = match m.opt_str("upload-delete-local") {
        None => None,
        Some(v) => Some(parse_age(&v).ok_or_else(|| {
            ConfigError(format!(
                "--upload-delete-local: '{v}' is not an age (0, 90s, 30m, 12h, 7d)"
            ))
        })?),
    };
    let workers = match m.opt_str("upload-workers") {
        None => 2,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=64).contains(&n) => n,
            _ => return err(format!("--upload-workers: '{v}' is not 1 to 64")),
        },
    };
    let part_size = match m.opt_str("upload-part-size") {
        None => 16 << 20,
        Some(v) => match parse_size(&v) {
            Some(n) if (upload::MIN_PART..=(1 << 30)).contains(&n) => n,
            _ => {
                return err(format!(
                    "--upload-part-size: '{v}' is not a size from 5M to 1G"
                ))
            }
        },
    };
    let c = UploadConfig {
        bucket,
        prefix,
        endpoint,
        path_style,
        region,
        access_key,
        secret_key,
        session_token,
        workers,
        part_size,
        delete_local_after,
    };
    // The endpoint must make a bucket URL now, not at the first upload.
    upload::Remote::new(&c).map_err(ConfigError)?;
    Ok(Some(c))
}

pub fn render(line: &mut dyn FnMut(&str, String), u: Option<&UploadConfig>) {
    let Some(u) = u else {
        line("upload", "(off)".into());
        for o in [
            "upload-endpoint",
            "upload-region",
            "upload-credentials",
            "upload-delete-local",
            "upload-workers",
            "upload-part-size",
        ] {
            line(o, "(no --upload)".into());
        }
        return;
    };
    line("upload", u.url());
    line("upload-endpoint", u.endpoint.clone());
    line("upload-region", u.region.clone());
    // The key id only: the secret is never printed.
    line("upload-credentials", format!("key id {}", u.access_key));
    line(
        "upload-delete-local",
        u.delete_local_after
            .map_or_else(|| "(keep)".into(), |d| format!("{}s", d.as_secs())),
    );
    line("upload-workers", u.workers.to_string());
    line("upload-part-size", u.part_size.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("0"), Some(Duration::ZERO));
        assert_eq!(parse_age("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_age("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_age("7d"), Some(Duration::from_secs(7 * 86_400)));
        for bad in ["", "s", "-1", "1.5h", "1w", "99999999999999999999d"] {
            assert_eq!(parse_age(bad), None, "{bad}");
        }
    }
}
