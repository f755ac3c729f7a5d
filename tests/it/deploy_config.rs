//! The settings deploy/ gives are real ones: every `FORWARDER_*` variable the image, the
//! compose file, the Kubernetes manifests and the systemd units set is loaded the way the
//! server loads it (over deploy/forwarder.toml) and must be accepted; each grace period outlasts
//! the `worker.shutdown_deadline` that process gets; and deploy/forwarder.toml shows the
//! real defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use forwarder::config::{Config, ConfigError};
use serde_json::Value;

use crate::deploy::{deploy_dir, dockerfile_instructions, kustomized_manifests, yaml_documents};

type Vars = BTreeMap<String, String>;

/// What a variable a Kubernetes Secret fills holds, for the check.
fn from_a_secret(var: &str) -> String {
    match var {
        "FORWARDER_STORE__URL" => "postgres://forwarder:from-a-secret@postgres:5432/forwarder".into(),
        _ => "from-a-secret".into(),
    }
}

/// Loads the configuration as a process with `vars` in its environment and the sample file
/// (the image's FORWARDER_CONFIG, the units' --config) would.
fn load_with(vars: &Vars) -> Result<Config, ConfigError> {
    // SAFETY: nextest runs each test in a process of its own; the variables are removed after.
    unsafe { vars.iter().for_each(|(k, v)| std::env::set_var(k, v)) };
    let loaded = Config::load(Some(&deploy_dir().join("forwarder.toml")));
    unsafe { vars.keys().for_each(|k| std::env::remove_var(k)) };
    loaded
}

fn text(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_string)
}

/// The `ENV` of the image.
fn image_vars() -> Vars {
    let env = dockerfile_instructions().into_iter().filter(|i| i.name == "ENV");
    // BuildKit's parser gives `ENV K=V K2=V2` as the list K, V, K2, V2.
    let pairs: Vec<String> = env.flat_map(|i| i.values).collect();
    let vars: Vars = pairs.chunks(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect();
    assert!(vars.contains_key("FORWARDER_LISTEN"), "{vars:?}");
    vars
}

/// Every process deploy/ starts, with its variables and its stop grace period.
fn processes() -> Vec<(String, Vars, Duration)> {
    let mut found = Vec::new();
    let compose = &yaml_documents(&deploy_dir().join("compose.yaml"))[0];
    for (name, service) in compose["services"].as_object().unwrap() {
        if service["image"].as_str().is_none_or(|i| !i.starts_with("forwarder")) {
            continue;
        }
        let mut vars = image_vars();
        for (k, v) in service["environment"].as_object().unwrap() {
            vars.insert(k.clone(), text(v));
        }
        let grace: humantime_serde::Serde<Duration> =
            serde_json::from_value(service["stop_grace_period"].clone()).unwrap();
        found.push((format!("compose service {name}"), vars, *grace));
    }
    let resources: Vec<Value> = kustomized_manifests().iter().flat_map(|f| yaml_documents(f)).collect();
    let config_maps: BTreeMap<&str, &Value> = resources
        .iter()
        .filter(|r| r["kind"] == "ConfigMap")
        .map(|r| (r["metadata"]["name"].as_str().unwrap(), &r["data"]))
        .collect();
    for deployment in resources.iter().filter(|r| r["kind"] == "Deployment") {
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let mut vars = image_vars();
        for source in container["envFrom"].as_array().into_iter().flatten() {
            let map = config_maps[source["configMapRef"]["name"].as_str().unwrap()];
            vars.extend(map.as_object().unwrap().iter().map(|(k, v)| (k.clone(), text(v))));
        }
        for var in container["env"].as_array().into_iter().flatten() {
            let name = var["name"].as_str().unwrap().to_string();
            let value = if var["valueFrom"]["secretKeyRef"].is_object() {
                from_a_secret(&name)
            } else {
                text(&var["value"])
            };
            vars.insert(name, value);
        }
        let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
        found.push((format!("Deployment {}", deployment["metadata"]["name"]), vars, grace));
    }
    for unit in ["forwarder.service", "forwarder-worker@.service"] {
        let text = std::fs::read_to_string(deploy_dir().join("systemd").join(unit)).unwrap();
        let setting = |key: &str| -> Vec<String> {
            text.lines().filter_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_string()).collect()
        };
        let vars: Vars = setting("Environment=")
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let exec = setting("ExecStart=").remove(0);
        assert!(exec.ends_with("--config /etc/forwarder/forwarder.toml"), "{unit}: {exec}");
        let grace = Duration::from_secs(setting("TimeoutStopSec=")[0].parse().unwrap());
        found.push((format!("unit {unit}"), vars, grace));
    }
    found
}

#[test]
fn every_setting_deploy_gives_is_a_real_one() {
    let processes = processes();
    assert_eq!(processes.len(), 2 + 2 + 2, "compose api and worker, two Deployments, two units");
    for (process, vars, _) in &processes {
        assert!(vars.keys().all(|k| k.starts_with("FORWARDER_")), "{process}: {vars:?}");
        if let Err(e) = load_with(vars) {
            panic!("{process}: its settings are refused: {e}\n{vars:?}");
        }
    }
    // The check can fail: a misspelt setting is refused, not ignored.
    let (_, mut vars, _) = processes.into_iter().next().unwrap();
    vars.insert("FORWARDER_WORKER__CONCURENCY".into(), "2".into());
    let refused = load_with(&vars).unwrap_err().to_string();
    assert!(refused.contains("concurency"), "{refused}");
}

#[test]
fn every_grace_period_outlasts_the_shutdown_deadline() {
    for (process, vars, grace) in processes() {
        let deadline = load_with(&vars).unwrap().worker.shutdown_deadline;
        // Room past the deadline for the store and the email outbox to close.
        assert!(
            grace >= deadline + Duration::from_secs(10),
            "{process}: stops after {grace:?}, its jobs get worker.shutdown_deadline {deadline:?}"
        );
    }
}

/// Every setting's dotted path (`worker.lease`, `auth.tokens`), from the defaults.
fn setting_paths(value: &Value, prefix: &str, paths: &mut Vec<String>) {
    match value.as_object() {
        Some(table) if !table.is_empty() => {
            for (key, inner) in table {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                setting_paths(inner, &path, paths);
            }
        }
        _ => paths.push(prefix.to_string()),
    }
}

/// The settings a TOML file names, set or in a commented-out example (`# key = …`).
fn named_in(sample: &str) -> Vec<String> {
    let mut section = String::new();
    let mut named = Vec::new();
    for line in sample.lines() {
        let line = line.trim_start_matches('#').trim();
        if line.starts_with('[') {
            section = line.trim_start_matches('[').split(']').next().unwrap().trim().to_string();
            named.push(section.clone());
        } else if let Some((key, _)) = line.split_once('=')
            && !key.trim().is_empty()
            && key.trim().chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            named.push(if section.is_empty() {
                key.trim().to_string()
            } else {
                format!("{section}.{}", key.trim())
            });
        }
    }
    named
}

#[test]
fn the_sample_configuration_shows_the_real_defaults() {
    let file = deploy_dir().join("forwarder.toml");
    let from_sample = Config::load(Some(&file)).unwrap();
    let defaults = serde_json::to_value(Config::default()).unwrap();
    assert_eq!(
        serde_json::to_value(&from_sample).unwrap(),
        defaults,
        "a value set in deploy/forwarder.toml is not the default"
    );
    let named = named_in(&std::fs::read_to_string(&file).unwrap());
    let mut paths = Vec::new();
    setting_paths(&defaults, "", &mut paths);
    let missing: Vec<&String> = paths.iter().filter(|p| !named.contains(p)).collect();
    assert!(missing.is_empty(), "deploy/forwarder.toml does not show {missing:?}");
}
