//! What ships in `deploy/`, checked as an operator would meet it: every kustomize overlay rendered
//! with `kubectl kustomize` (as `kubectl apply -k` would), every workload in the output hardened
//! and probed, every Secret and volume claim it uses defined, the container config and the
//! Dockerfile agreeing with the manifests.

use authgate::config::Config;
use serde::Deserialize;
use serde_norway::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn overlays() -> Vec<PathBuf> {
    let dir = Path::new(ROOT).join("deploy/kubernetes/overlays");
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    overlays.sort();
    overlays
}

/// `kubectl kustomize <overlay>`, as documents.
fn render(overlay: &Path) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(overlay)
        .output()
        .expect("kubectl must be installed (.ci/run installs it)");
    assert!(out.status.success(), "{overlay:?}: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .collect()
}

fn at<'v>(value: &'v Value, path: &str) -> &'v Value {
    path.split('.').fold(value, |v, key| &v[key])
}

fn named<'v>(docs: &'v [Value], kind: &str) -> Vec<&'v Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn names_of(docs: &[Value], kind: &str) -> Vec<String> {
    named(docs, kind)
        .iter()
        .map(|d| at(d, "metadata.name").as_str().unwrap().to_string())
        .collect()
}

/// The image's config: how long its shutdown may take, in seconds.
fn container_config() -> Config {
    let text =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/container/authgate.yaml")).unwrap();
    let config = Config::parse(&text).unwrap();
    config.validate().unwrap();
    config
}

#[test]
fn the_container_config_listens_everywhere_with_no_demo_and_logs_json() {
    let config = container_config();
    assert!(config.listen.starts_with("0.0.0.0:"), "{}", config.listen);
    assert!(config.admin.listen.starts_with("0.0.0.0:"));
    assert_eq!(config.demo_upstream, None);
    assert!(
        config.users_file.is_some(),
        "no demo users: a users file is required"
    );
    assert_eq!(config.log.format, authgate::config::LogFormat::Json);
    assert!(
        config.shutdown.delay_seconds > 0,
        "not ready before the listeners close"
    );

    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("deploy/Dockerfile")).unwrap();
    assert!(
        dockerfile.lines().any(|l| l.trim() == "USER 10001:10001"),
        "a numeric user, for runAsNonRoot"
    );
    assert!(dockerfile.contains("cargo build --release --locked"));
    let ignore = std::fs::read_to_string(Path::new(ROOT).join(".dockerignore")).unwrap();
    let rules: Vec<&str> = ignore.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        rules.first(),
        Some(&"*"),
        "the context holds only what the build copies"
    );
    assert!(rules.contains(&"!src") && rules.contains(&"!Cargo.lock"));
}

#[test]
fn every_overlay_renders_hardened_probed_and_complete() {
    let config = container_config();
    let shutdown = config.shutdown.delay_seconds
        + config.shutdown.grace_period_seconds
        + config.shutdown.graceful_shutdown_timeout_seconds;
    let overlays = overlays();
    let names: Vec<String> = overlays
        .iter()
        .map(|o| o.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for wanted in ["sidecar", "standalone", "forward-auth", "replicas-redis"] {
        assert!(names.iter().any(|n| n == wanted), "overlay {wanted}");
    }
    for overlay in &overlays {
        let docs = render(overlay);
        let secrets = names_of(&docs, "Secret");
        let claims = names_of(&docs, "PersistentVolumeClaim");
        let workloads: Vec<&Value> = ["Deployment", "StatefulSet", "DaemonSet"]
            .iter()
            .flat_map(|kind| named(&docs, kind))
            .collect();
        assert!(!workloads.is_empty(), "{overlay:?}");
        for w in workloads {
            let name = format!("{overlay:?} {}", at(w, "metadata.name").as_str().unwrap());
            let pod = at(w, "spec.template.spec");
            let security = &pod["securityContext"];
            assert_eq!(security["runAsNonRoot"], true, "{name}");
            assert_eq!(security["runAsUser"], 10001, "{name}");
            assert_eq!(security["fsGroup"], 10001, "{name}");
            assert_eq!(
                at(security, "seccompProfile.type"),
                "RuntimeDefault",
                "{name}"
            );
            let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
            assert!(
                grace > shutdown,
                "{name}: {grace} s ≤ authgate's {shutdown} s"
            );
            for c in pod["containers"].as_sequence().unwrap() {
                let cname = format!("{name}/{}", c["name"].as_str().unwrap());
                let cs = &c["securityContext"];
                assert_eq!(cs["readOnlyRootFilesystem"], true, "{cname}");
                assert_eq!(cs["allowPrivilegeEscalation"], false, "{cname}");
                let drop = at(cs, "capabilities.drop").as_sequence().unwrap();
                assert!(drop.iter().any(|d| d == "ALL"), "{cname}");
                for kind in ["requests", "limits"] {
                    for resource in ["cpu", "memory"] {
                        assert!(
                            !c["resources"][kind][resource].is_null(),
                            "{cname}: {kind}.{resource}"
                        );
                    }
                }
                if c["name"] == "authgate" {
                    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                        assert_eq!(at(&c[probe], "httpGet.port"), "admin", "{cname} {probe}");
                    }
                    assert_eq!(at(&c["readinessProbe"], "httpGet.path"), "/readyz");
                }
            }
            for volume in pod["volumes"].as_sequence().into_iter().flatten() {
                if let Some(secret) = at(volume, "secret.secretName").as_str() {
                    assert!(
                        secrets.iter().any(|s| s == secret),
                        "{name}: Secret {secret}"
                    );
                }
                if let Some(claim) = at(volume, "persistentVolumeClaim.claimName").as_str() {
                    assert!(claims.iter().any(|c| c == claim), "{name}: PVC {claim}");
                    // One pod at a time on the embedded store's volume: redb locks its file.
                    assert_eq!(at(w, "spec.strategy.type"), "Recreate", "{name}");
                    assert!(w["spec"]["replicas"].as_u64().unwrap_or(1) <= 1, "{name}");
                }
            }
        }
        for kind in ["NetworkPolicy", "ServiceMonitor", "PodMonitor", "Service"] {
            assert!(!named(&docs, kind).is_empty(), "{overlay:?}: {kind}");
        }
    }
}

/// Every metric name in the shipped alerts and dashboard is one authgate exports: the names in
/// `src/metrics.rs`, and those a fresh registry gathers (the process_* ones).
#[test]
fn alerts_and_dashboard_name_only_metrics_that_exist() {
    let source = std::fs::read_to_string(Path::new(ROOT).join("src/metrics.rs")).unwrap();
    let mut known: Vec<String> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split('"').nth(1))
        .map(String::from)
        .collect();
    let gathered = String::from_utf8(authgate::metrics::Metrics::new().encode()).unwrap();
    known.extend(
        gathered
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(String::from),
    );
    assert!(known.iter().any(|n| n == "process_resident_memory_bytes"));
    let exists = |name: &str| {
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        known.iter().any(|k| k == name || k == family)
    };
    for file in [
        "deploy/kubernetes/base/prometheusrule.yaml",
        "deploy/monitoring/grafana-dashboard.json",
    ] {
        let text = std::fs::read_to_string(Path::new(ROOT).join(file)).unwrap();
        let mut named = 0;
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("authgate_") || word.starts_with("process_") {
                assert!(
                    exists(word),
                    "{file} names {word}, which authgate does not export"
                );
                named += 1;
            }
        }
        assert!(named > 5, "{file}");
    }
}
