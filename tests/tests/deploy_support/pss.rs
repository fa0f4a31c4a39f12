//! The Kubernetes Pod Security Standards, as far as a pod template of ours can touch them: which
//! level (`restricted` < `baseline` < `privileged`) a pod needs, and whether a namespace's
//! `pod-security.kubernetes.io/enforce` label admits it. Written from the published standard
//! (<https://kubernetes.io/docs/concepts/security/pod-security-standards/>); fields our manifests
//! never use (AppArmor, SELinux options, sysctls, procMount, Windows) are not checked.

use serde_json::Value;

/// A Pod Security Standards level, from the strictest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Restricted,
    Baseline,
    Privileged,
}

impl Level {
    pub fn parse(label: &str) -> Option<Level> {
        match label {
            "restricted" => Some(Level::Restricted),
            "baseline" => Some(Level::Baseline),
            "privileged" => Some(Level::Privileged),
            _ => None,
        }
    }
}

/// Capabilities the baseline level lets a container add.
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Volume types the restricted level allows.
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .collect()
}

/// The least privileged level that admits a pod with this spec, and the reasons it needs more
/// than `restricted`.
pub fn required_level(spec: &Value) -> (Level, Vec<String>) {
    let mut baseline = Vec::new();
    let mut restricted = Vec::new();
    for key in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec[key] == true {
            baseline.push(format!("{key}: true"));
        }
    }
    let pod_sc = &spec["securityContext"];
    if pod_sc["seccompProfile"]["type"] == "Unconfined" {
        baseline.push("seccompProfile Unconfined".to_owned());
    }
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or("?");
        let kinds: Vec<&String> = v
            .as_object()
            .map(|o| o.keys().filter(|k| *k != "name").collect())
            .unwrap_or_default();
        for kind in kinds {
            if kind == "hostPath" {
                baseline.push(format!("hostPath volume {name}"));
            } else if !RESTRICTED_VOLUMES.contains(&kind.as_str()) {
                restricted.push(format!("{kind} volume {name}"));
            }
        }
    }
    if pod_sc["runAsUser"] == 0 {
        restricted.push("pod runAsUser 0".to_owned());
    }
    let pod_non_root = pod_sc["runAsNonRoot"] == true;
    let pod_seccomp = matches!(
        pod_sc["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault" | "Localhost")
    );
    for c in containers(spec) {
        let name = c["name"].as_str().unwrap_or("?");
        let sc = &c["securityContext"];
        if sc["privileged"] == true {
            baseline.push(format!("{name}: privileged"));
        }
        if sc["seccompProfile"]["type"] == "Unconfined" {
            baseline.push(format!("{name}: seccompProfile Unconfined"));
        }
        for port in c["ports"].as_array().into_iter().flatten() {
            if port["hostPort"].as_u64().is_some_and(|p| p != 0) {
                baseline.push(format!("{name}: hostPort"));
            }
        }
        let added: Vec<&str> = sc["capabilities"]["add"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for cap in &added {
            if !BASELINE_CAPABILITIES.contains(cap) {
                baseline.push(format!("{name}: adds capability {cap}"));
            } else if *cap != "NET_BIND_SERVICE" {
                restricted.push(format!("{name}: adds capability {cap}"));
            }
        }
        let drops_all = sc["capabilities"]["drop"]
            .as_array()
            .is_some_and(|d| d.iter().any(|c| c == "ALL"));
        if !drops_all {
            restricted.push(format!("{name}: does not drop ALL capabilities"));
        }
        if sc["allowPrivilegeEscalation"] != false {
            restricted.push(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        let non_root = if sc["runAsNonRoot"].is_boolean() {
            sc["runAsNonRoot"] == true
        } else {
            pod_non_root
        };
        if !non_root {
            restricted.push(format!("{name}: runAsNonRoot is not true"));
        }
        if sc["runAsUser"] == 0 {
            restricted.push(format!("{name}: runAsUser 0"));
        }
        let seccomp = match sc["seccompProfile"]["type"].as_str() {
            Some(t) => matches!(t, "RuntimeDefault" | "Localhost"),
            None => pod_seccomp,
        };
        if !seccomp {
            restricted.push(format!(
                "{name}: no RuntimeDefault/Localhost seccompProfile"
            ));
        }
    }
    if !baseline.is_empty() {
        baseline.extend(restricted);
        (Level::Privileged, baseline)
    } else if !restricted.is_empty() {
        (Level::Baseline, restricted)
    } else {
        (Level::Restricted, Vec::new())
    }
}

/// The level a Namespace object enforces (its `pod-security.kubernetes.io/enforce` label), if set.
pub fn enforced_level(namespace: &Value) -> Option<Level> {
    namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        .as_str()
        .map(|l| Level::parse(l).unwrap_or_else(|| panic!("unknown Pod Security level {l}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn levels_follow_the_standard() {
        let locked = json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "a", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
            "volumes": [{"name": "v", "emptyDir": {}}]
        });
        assert_eq!(required_level(&locked).0, Level::Restricted);
        let mut root = locked.clone();
        root["containers"][0]["securityContext"]["runAsUser"] = json!(0);
        assert_eq!(required_level(&root).0, Level::Baseline);
        let mut host = locked.clone();
        host["volumes"][0] = json!({"name": "h", "hostPath": {"path": "/run/x"}});
        assert_eq!(required_level(&host).0, Level::Privileged);
        assert!(Level::Restricted < Level::Baseline && Level::Baseline < Level::Privileged);
    }
}
