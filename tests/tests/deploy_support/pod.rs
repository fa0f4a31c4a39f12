//! A pod template read as the kubelet reads it, for the rehearsals: its volumes become
//! directories of a temporary folder, its containers' mounts a [`PathMap`], its ConfigMaps files,
//! its env values (Downward-API fields resolved to fixed test values).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{PathMap, find_object, strings};

/// The namespace and node every rehearsed pod is "in".
pub const NAMESPACE: &str = "rehearsal";
pub const NODE: &str = "node-rehearsal-1";

/// One pod's Downward-API values.
pub fn field(path: &str, pod: &str) -> String {
    match path {
        "metadata.name" => pod.to_owned(),
        "metadata.namespace" => NAMESPACE.to_owned(),
        "spec.nodeName" => NODE.to_owned(),
        other => panic!("the rehearsal has no value for the Downward-API field {other}: add one"),
    }
}

pub fn pod_spec<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    &find_object(docs, kind, name)["spec"]["template"]["spec"]
}

pub fn all_containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers"]
        .into_iter()
        .flat_map(move |k| spec[k].as_array().into_iter().flatten())
}

pub fn first_arg_is(c: &Value, arg: &str) -> bool {
    c["args"]
        .as_array()
        .and_then(|a| a.first())
        .is_some_and(|a| a == arg)
}

/// The host directory of each volume of `spec`: emptyDir and configMap volumes get their own,
/// hostPath volumes one per host path (so two pods on "the node" share it).
pub fn volume_dirs(spec: &Value, work: &Path) -> HashMap<String, PathBuf> {
    let mut dirs = HashMap::new();
    for v in spec["volumes"].as_array().expect("volumes") {
        let name = v["name"].as_str().unwrap().to_owned();
        let dir = if let Some(path) = v["hostPath"]["path"].as_str() {
            work.join("host").join(path.trim_start_matches('/'))
        } else {
            assert!(
                v["emptyDir"].is_object() || v["configMap"].is_object(),
                "volume kind of {v}"
            );
            work.join("volumes").join(&name)
        };
        std::fs::create_dir_all(&dir).unwrap();
        dirs.insert(name, dir);
    }
    dirs
}

/// The container's mounts as a [`PathMap`].
pub fn mounts(container: &Value, dirs: &HashMap<String, PathBuf>) -> PathMap {
    let mut map = PathMap::new();
    for m in container["volumeMounts"].as_array().into_iter().flatten() {
        let mut host = dirs[m["name"].as_str().unwrap()].clone();
        if let Some(sub) = m["subPath"].as_str() {
            host = host.join(sub);
        }
        map.mount(m["mountPath"].as_str().unwrap(), &host);
    }
    map
}

/// Writes each configMap volume's files, with the container paths in them rewritten for the
/// container that mounts it (the agent's TOML names its spool directory, for example).
pub fn write_configmaps(spec: &Value, docs: &[Value], dirs: &HashMap<String, PathBuf>) {
    for v in spec["volumes"].as_array().unwrap() {
        let Some(cm) = v["configMap"]["name"].as_str() else {
            continue;
        };
        let name = v["name"].as_str().unwrap();
        let user = all_containers(spec)
            .find(|c| {
                c["volumeMounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|m| m["name"] == name)
            })
            .unwrap_or_else(|| panic!("nobody mounts volume {name}"));
        let map = mounts(user, dirs);
        for (file, text) in find_object(docs, "ConfigMap", cm)["data"]
            .as_object()
            .unwrap()
        {
            std::fs::write(dirs[name].join(file), map.rewrite(text.as_str().unwrap())).unwrap();
        }
    }
}

/// The container's env: literal values with paths rewritten, Downward-API fields resolved.
pub fn env(container: &Value, map: &PathMap, pod: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap().to_owned();
        let value = if let Some(v) = e["value"].as_str() {
            map.rewrite(v)
        } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            field(path, pod)
        } else {
            panic!("the rehearsal cannot resolve env {e}");
        };
        out.push((name, value));
    }
    out
}

pub fn argv(container: &Value, map: &PathMap) -> Vec<String> {
    let mut argv: Vec<String> = Vec::new();
    for key in ["command", "args"] {
        if !container[key].is_null() {
            argv.extend(strings(&container[key]).iter().map(|a| map.rewrite(a)));
        }
    }
    argv
}

pub fn probes(agent: &Value) -> Vec<String> {
    ["startupProbe", "readinessProbe", "livenessProbe"]
        .iter()
        .filter_map(|p| agent[p]["httpGet"]["path"].as_str().map(str::to_owned))
        .collect()
}
