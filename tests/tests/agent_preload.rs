//! `logtap agent` with real programs under the real `liblogtap.so`.

use std::collections::HashMap;
use std::time::Duration;

use logtap_tests::agent_harness::Agent;

#[test]
fn a_hundred_tapped_processes_at_once() {
    let agent = Agent::start("preload-hundred", &["--flush-interval", "100ms"]);
    let mut children: Vec<_> = (0..100)
        .map(|p| {
            let script =
                format!("i=0; while [ $i -lt 50 ]; do echo \"proc {p} line $i\"; i=$((i+1)); done");
            agent.tapped_shell(&script).spawn().unwrap()
        })
        .collect();
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
    let records = agent.wait_records(5000, Duration::from_secs(30));
    let mut per_proc: HashMap<String, Vec<String>> = HashMap::new();
    for r in &records {
        let msg = r["message"].as_str().unwrap();
        let proc = msg.split(" line ").next().unwrap().to_owned();
        per_proc.entry(proc).or_default().push(msg.to_owned());
        assert_eq!(r["stream"], "stdout");
        assert_eq!(r["comm"], "sh");
    }
    assert_eq!(per_proc.len(), 100);
    for (proc, lines) in per_proc {
        let expected: Vec<String> = (0..50).map(|i| format!("{proc} line {i}")).collect();
        assert_eq!(lines, expected, "{proc}: every line once, in order");
    }
    let (status, all) = agent.terminate();
    assert!(status.success());
    assert_eq!(all.len(), 5000, "no duplicates");
}

#[test]
fn sigterm_delivers_what_a_running_process_wrote() {
    let agent = Agent::start("preload-sigterm", &["--flush-interval", "60s"]);
    let mut child = agent
        .tapped_shell("echo before; printf unterminated; sleep 30")
        .spawn()
        .unwrap();
    // The lines sit in the batch stage (60 s flush interval) until the drain.
    std::thread::sleep(Duration::from_millis(500));
    assert!(agent.records().is_empty());
    let (status, records) = agent.terminate();
    let _ = child.kill();
    let _ = child.wait();
    assert!(status.success(), "{status}");
    let got: Vec<(&str, bool)> = records
        .iter()
        .map(|r| (r["message"].as_str().unwrap(), r.get("partial").is_some()))
        .collect();
    assert_eq!(got, [("before", false), ("unterminated", true)]);
}
