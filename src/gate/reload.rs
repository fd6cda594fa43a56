//! Loading the policy and reloading it on SIGHUP or when its file changes.
//!
//! A reload re-reads the configuration file (and `policy_file`, if set), validates the whole
//! policy off the hot path and swaps it in atomically. An invalid file keeps the old policy
//! running: the failure is counted (`portcullis_policy_reloads_total{result="error"}`) and
//! logged as one error line listing every problem. Listener, TLS and upstream settings are
//! read only at start; changing them needs a restart.
//!
//! File changes are found by polling size and modification time every
//! [`POLL_INTERVAL`]: one `stat` per file every two seconds costs nothing, works on every
//! filesystem (including the bind mounts and symlink swaps of Kubernetes config maps), and
//! needs no watcher dependency.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{error, info, warn};

use super::{ActivePolicy, Gate, Secret};
use crate::config::Config;
use crate::policy::parse_policy;

pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Where the policy text comes from, and its origin name for messages.
fn policy_text(cfg: &Config) -> Result<(String, String), Vec<String>> {
    match &cfg.policy_file {
        Some(p) => {
            let path = cfg.resolve(p);
            std::fs::read_to_string(&path)
                .map(|t| (t, path.display().to_string()))
                .map_err(|e| vec![format!("{}: cannot read policy_file: {e}", path.display())])
        }
        None => Ok((
            cfg.source_text.clone(),
            cfg.source_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "<embedded config.toml>".into()),
        )),
    }
}

/// Validates the policy a configuration names; every problem, one string each.
pub fn load_policy(cfg: &Config) -> Result<crate::policy::Policy, Vec<String>> {
    let (text, origin) = policy_text(cfg)?;
    parse_policy(&text).map_err(|issues| issues.iter().map(|i| format!("{origin}: {i}")).collect())
}

fn process_secret() -> Vec<u8> {
    static SECRET: OnceLock<Vec<u8>> = OnceLock::new();
    SECRET
        .get_or_init(|| {
            let mut b = vec![0u8; 32];
            // SystemRandom failing means the OS has no entropy source: nothing sensible to do
            // but fall back to a fixed secret, which only weakens account-id unlinkability.
            if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
                b = b"portcullis-fallback-account-secret".to_vec();
            }
            warn!("no account secret configured (policy.identity.secret_env / secret_file): using a random per-process secret; account ids will differ across restarts and proxies");
            b
        })
        .clone()
}

/// The secret the identity section names: an environment variable or a file.
fn resolve_secret(cfg: &Config, policy: &crate::policy::Policy) -> Result<Secret, Vec<String>> {
    let id = policy.identity();
    if let Some(path) = &id.secret_file {
        let p = cfg.resolve(path);
        return match std::fs::read(&p) {
            Ok(b) if !b.trim_ascii().is_empty() => Ok(Secret::new(b.trim_ascii().to_vec())),
            Ok(_) => Err(vec![format!(
                "policy.identity.secret_file {}: file is empty",
                p.display()
            )]),
            Err(e) => Err(vec![format!(
                "policy.identity.secret_file {}: {e}",
                p.display()
            )]),
        };
    }
    if let Some(var) = &id.secret_env {
        if let Ok(v) = std::env::var(var) {
            if !v.is_empty() {
                return Ok(Secret::new(v.into_bytes()));
            }
        }
    }
    Ok(Secret::new(process_secret()))
}

/// Loads policy and secret for a configuration.
pub fn load_active(cfg: &Config) -> Result<ActivePolicy, Vec<String>> {
    let policy = load_policy(cfg)?;
    let secret = resolve_secret(cfg, &policy)?;
    Ok(ActivePolicy::new(policy, secret))
}

/// Re-reads `config_path` and swaps the policy in on success.
pub fn reload(gate: &Gate, config_path: &Path) -> bool {
    let result = Config::load(config_path)
        .map_err(|e| vec![e.to_string()])
        .and_then(|cfg| load_active(&cfg));
    match result {
        Ok(active) => {
            let version = active.policy.version().to_string();
            gate.swap(active);
            metrics::counter!("portcullis_policy_reloads_total", "result" => "ok").increment(1);
            info!(%version, "policy reloaded");
            true
        }
        Err(problems) => {
            metrics::counter!("portcullis_policy_reloads_total", "result" => "error").increment(1);
            error!(problems = %problems.join("; "), "policy reload failed; keeping the running policy");
            false
        }
    }
}

fn stamp(paths: &[PathBuf]) -> Vec<Option<(u64, SystemTime)>> {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?)))
        })
        .collect()
}

/// The files whose change triggers a reload: the configuration and its `policy_file`.
pub fn watched_files(cfg: &Config) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = &cfg.source_path {
        out.push(p.clone());
    }
    if let Some(p) = &cfg.policy_file {
        out.push(cfg.resolve(p));
    }
    out
}

/// Reloads on SIGHUP and on file change until `stop` fires. Without a configuration file
/// (the embedded default) there is nothing to reload and the task only waits.
pub async fn watch_task(gate: Arc<Gate>, cfg: Arc<Config>, mut stop: watch::Receiver<bool>) {
    let Some(config_path) = cfg.source_path.clone() else {
        let _ = stop.changed().await;
        return;
    };
    let files = watched_files(&cfg);
    let mut last = stamp(&files);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let hup_fut = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hup_fut = std::future::pending::<()>();
        tokio::select! {
            _ = stop.changed() => return,
            _ = hup_fut => {
                info!("SIGHUP: reloading policy");
                reload(&gate, &config_path);
                last = stamp(&files);
            }
            _ = tokio::time::sleep(POLL_INTERVAL) => {
                let now = stamp(&files);
                if now != last {
                    last = now;
                    reload(&gate, &config_path);
                }
            }
        }
    }
}
