//! deploy/ checked as far as it can be without Docker or a cluster: the compose file and the
//! Kubernetes manifests against their schemas (validators from PyPI, in the venv
//! scripts/test.sh prepares), the kustomization against the files it lists, and the
//! systemd units with `systemd-analyze` where it exists. The settings they give are checked
//! against `Config` in `deploy_config.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::env;

/// The oldest and the newest Kubernetes release the manifests are checked against.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];
/// `systemd-analyze security` scores exposure from 0 to 100 (shown as 0.0 to 10.0); the
/// units score 17 today. Above 20 a sandboxing setting went missing.
const MAX_UNIT_EXPOSURE: u32 = 20;

pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// The python of the validators' venv: `FORWARDER_TEST_DEPLOY_PYTHON` (scripts/test.sh sets
/// it), else the venv scripts/test.sh made in tests/deploy/.venv on an earlier run.
pub fn deploy_python() -> PathBuf {
    let made = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/deploy/.venv/bin/python");
    match std::env::var_os("FORWARDER_TEST_DEPLOY_PYTHON") {
        Some(given) => PathBuf::from(given),
        None if made.exists() => made,
        None => PathBuf::from(env("FORWARDER_TEST_DEPLOY_PYTHON")),
    }
}

/// The venv's tool `name` (check-jsonschema, kubernetes-validate), beside its python.
fn venv_tool(name: &str) -> PathBuf {
    deploy_python().with_file_name(name)
}

/// The YAML documents of `file`, read by PyYAML (merge keys resolved) and handed over as JSON.
pub fn yaml_documents(file: &Path) -> Vec<Value> {
    let out = Command::new(deploy_python())
        .args([
            "-c",
            "import json, sys, yaml; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap().into_iter().filter(|d| !d.is_null()).collect()
}

/// One instruction of deploy/Dockerfile, as BuildKit's parser reads it.
pub struct Instruction {
    pub name: String,
    pub flags: Vec<String>,
    pub values: Vec<String>,
}

/// The instructions of deploy/Dockerfile, parsed by the `dockerfile` package (BuildKit's parser).
pub fn dockerfile_instructions() -> Vec<Instruction> {
    let script = "import dockerfile, json, sys; \
        json.dump([[c.cmd, list(c.flags), list(c.value)] for c in dockerfile.parse_file(sys.argv[1])], sys.stdout)";
    let out = Command::new(deploy_python())
        .args(["-c", script])
        .arg(deploy_dir().join("Dockerfile"))
        .output()
        .unwrap();
    assert!(out.status.success(), "deploy/Dockerfile: {}", String::from_utf8_lossy(&out.stderr));
    let parsed: Vec<(String, Vec<String>, Vec<String>)> = serde_json::from_slice(&out.stdout).unwrap();
    parsed.into_iter().map(|(name, flags, values)| Instruction { name, flags, values }).collect()
}

/// The manifests `kubectl apply -k deploy/k8s` applies, as the kustomization lists them.
pub fn kustomized_manifests() -> Vec<PathBuf> {
    let dir = deploy_dir().join("k8s");
    let kustomization = &yaml_documents(&dir.join("kustomization.yaml"))[0];
    kustomization["resources"].as_array().unwrap().iter().map(|r| dir.join(r.as_str().unwrap())).collect()
}

fn run(command: &mut Command) -> (bool, String) {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn compose_file_validates_against_the_compose_spec() {
    let compose = deploy_dir().join("compose.yaml");
    let (ok, said) = run(Command::new(venv_tool("check-jsonschema"))
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(&compose));
    assert!(ok, "deploy/compose.yaml does not follow the compose spec:\n{said}");
}

#[test]
fn image_is_built_in_stages_runs_as_a_user_and_is_labelled_with_its_version() {
    const KNOWN: [&str; 18] = [
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    ];
    let all = dockerfile_instructions();
    for i in &all {
        assert!(KNOWN.contains(&i.name.as_str()), "deploy/Dockerfile: unknown instruction {}", i.name);
    }
    let stages = all.iter().filter(|i| i.name == "FROM").count();
    assert!(stages >= 2, "a multi-stage build: one stage builds, a small one runs");
    // The instructions of the last stage: what the running image is.
    let last_from = all.iter().rposition(|i| i.name == "FROM").unwrap();
    let runtime = &all[last_from..];
    let base = &runtime[0].values[0];
    assert!(base.contains("slim") || base.contains("distroless"), "runtime base {base}");
    let user = &runtime.iter().rfind(|i| i.name == "USER").expect("the image names a USER").values[0];
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "the image runs as {user}");
    let labels: Vec<&String> = runtime.iter().filter(|i| i.name == "LABEL").flat_map(|i| &i.values).collect();
    let label = |key: &str| labels.iter().position(|v| *v == key).map(|at| labels[at + 1].trim_matches('"'));
    assert_eq!(label("org.opencontainers.image.version"), Some("${VERSION}"));
    assert_eq!(label("org.opencontainers.image.revision"), Some("${REVISION}"));
    let build =
        all[..last_from].iter().filter(|i| i.name == "RUN").map(|i| i.values.join(" ")).collect::<String>();
    assert!(
        build.contains("BUILT_FROM_COMMIT=${REVISION} cargo build"),
        "the commit reaches `forwarder --version`"
    );
    // The build context lets in what the build reads: the crate, the workspace's other crates,
    // Cargo's configuration and the files COPY names.
    let ignore = std::fs::read_to_string(deploy_dir().join("Dockerfile.dockerignore")).unwrap();
    let context_copies = all.iter().filter(|i| i.name == "COPY" && i.flags.is_empty());
    let sources = context_copies.map(|i| i.values[0].clone()).filter(|s| s != ".");
    let manifest = std::fs::read_to_string(deploy_dir().join("../Cargo.toml")).unwrap();
    let members = manifest
        .lines()
        .find_map(|l| l.strip_prefix("members = "))
        .expect("Cargo.toml names the workspace's members")
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|m| *m != ".")
        .map(|m| format!("{m}/**"))
        .collect::<Vec<_>>();
    assert!(!members.is_empty(), "the workspace has crates besides the root");
    let parents = members.iter().map(|m| format!("{}/**", m.split('/').next().unwrap())).collect::<Vec<_>>();
    for needed in ["Cargo.toml", "Cargo.lock", "build.rs", ".cargo/config.toml", "src/**", "migrations/**"]
        .map(String::from)
        .into_iter()
        .chain(parents)
        .chain(sources)
    {
        assert!(
            ignore.lines().any(|l| l.trim() == format!("!{needed}")),
            "Dockerfile.dockerignore keeps out {needed}"
        );
    }
}

#[test]
fn kubernetes_manifests_validate_against_the_kubernetes_schemas() {
    let manifests = kustomized_manifests();
    for version in KUBERNETES_VERSIONS {
        let (ok, said) = run(Command::new(venv_tool("kubernetes-validate"))
            .args(["--strict", "--kubernetes-version", version])
            .args(&manifests));
        // An unknown kind is only a warning to the tool: here every resource must be checked.
        assert!(ok && !said.contains("Couldn't find schema"), "against Kubernetes {version}:\n{said}");
        assert!(said.contains("passed for resource deployment/forwarder-worker"), "{said}");
    }
}

#[test]
fn kustomization_applies_every_manifest_and_the_service_monitor_finds_the_pods() {
    let dir = deploy_dir().join("k8s");
    let listed = kustomized_manifests();
    for file in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        // The ServiceMonitor needs the Prometheus Operator's CRD: applied on its own.
        if name == "kustomization.yaml" || name == "servicemonitor.yaml" {
            continue;
        }
        assert!(listed.contains(&file), "{name} is in deploy/k8s but not in kustomization.yaml");
    }
    let resources: Vec<Value> = listed.iter().flat_map(|f| yaml_documents(f)).collect();
    let monitor = &yaml_documents(&dir.join("servicemonitor.yaml"))[0];
    let wanted = monitor["spec"]["selector"]["matchLabels"].as_object().unwrap();
    let port = monitor["spec"]["endpoints"][0]["port"].as_str().unwrap();
    let scraped: Vec<&str> = resources
        .iter()
        .filter(|r| r["kind"] == "Service")
        .filter(|s| wanted.iter().all(|(k, v)| &s["metadata"]["labels"][k] == v))
        .filter(|s| s["spec"]["ports"].as_array().unwrap().iter().any(|p| p["name"] == port))
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        scraped,
        ["forwarder", "forwarder-worker"],
        "Services the ServiceMonitor scrapes on port {port}"
    );
}

#[test]
fn deployments_probe_health_and_readiness_and_take_secrets_from_secrets() {
    for deployment in kustomized_manifests().iter().flat_map(|f| yaml_documents(f)) {
        if deployment["kind"] != "Deployment" {
            continue;
        }
        let name = deployment["metadata"]["name"].as_str().unwrap().to_string();
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz", "{name}");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz", "{name}");
        assert!(container["resources"]["requests"]["memory"].is_string(), "{name}: no memory request");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        let from_secret = |var: &str| {
            container["env"].as_array().unwrap().iter().any(|e| {
                e["name"] == var
                    && e["valueFrom"]["secretKeyRef"]["name"].is_string()
                    && e.get("value").is_none()
            })
        };
        assert!(from_secret("FORWARDER_STORE__URL"), "{name}: the database URL must come from a Secret");
        let key_volume =
            pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "server-key").unwrap();
        assert!(
            key_volume["secret"]["secretName"].is_string(),
            "{name}: the server key must come from a Secret"
        );
    }
}

/// The units as they would be installed, with the binary at the path they name.
fn installed_units(dir: &Path) -> Vec<PathBuf> {
    let binary = env!("CARGO_BIN_EXE_forwarder");
    ["forwarder.service", "forwarder-worker@.service", "forwarder-worker@1.service"]
        .iter()
        .map(|name| {
            let source = deploy_dir().join("systemd").join(name.replace("@1", "@"));
            let text = std::fs::read_to_string(source).unwrap().replace("/usr/local/bin/forwarder", binary);
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

#[test]
fn systemd_units_are_sandboxed() {
    for unit in ["forwarder.service", "forwarder-worker@.service"] {
        let text = std::fs::read_to_string(deploy_dir().join("systemd").join(unit)).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for wanted in [
            "DynamicUser=yes",
            "ProtectSystem=strict",
            "ReadWritePaths=/var/lib/forwarder",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "ProtectHome=yes",
            "CapabilityBoundingSet=",
        ] {
            assert!(lines.contains(&wanted), "{unit} lacks {wanted}");
        }
        // The data directory the sandbox leaves writable is the one the process writes to.
        assert!(lines.contains(&"Environment=FORWARDER_DATA_DIR=/var/lib/forwarder"), "{unit}");
    }
}

#[test]
fn systemd_units_pass_systemd_analyze() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        println!("note: systemd-analyze is not installed here: the units were not verified");
        return;
    }
    let dir = std::env::temp_dir().join(format!("forwarder-units-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    for unit in installed_units(&dir) {
        // Unknown keys and bad values are only warnings (exit 0): any word about our unit fails.
        let (ok, said) = run(Command::new("systemd-analyze").arg("verify").arg(&unit).current_dir(&dir));
        let about_ours: Vec<&str> = said.lines().filter(|l| l.contains("forwarder")).collect();
        assert!(ok && about_ours.is_empty(), "{}:\n{said}", unit.display());
        if unit.to_string_lossy().ends_with("@.service") {
            continue;
        }
        let threshold = format!("--threshold={MAX_UNIT_EXPOSURE}");
        let (ok, said) =
            run(Command::new("systemd-analyze").args(["security", "--offline=yes", &threshold]).arg(&unit));
        let score = said.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_default();
        assert!(ok, "{}: the sandbox got weaker: {score}\n{said}", unit.display());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
