//! `callgenius bench` end to end: the binary starts its own engine (`--spawn`), runs two
//! concurrent calls of a two-utterance conversation for a few seconds, and prints its JSON
//! report. The test checks the report's structure and that every turn was answered; never
//! timings, which depend on the machine.

use std::path::Path;

use serde_json::Value;

#[tokio::test]
async fn a_short_bench_against_a_spawned_engine_answers_every_turn() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_callgenius"))
            .current_dir(root)
            .args([
                "bench",
                "--spawn",
                "--calls",
                "2",
                "--duration",
                "3",
                "--conversation",
                "menu-joe",
                "--json",
            ])
            .output()
    })
    .await
    .unwrap()
    .expect("callgenius bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert!(
        report["engine"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert_eq!(report["conversation_utterances"], 2);
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{report}");
    let step = &steps[0];
    assert_eq!(step["concurrency"], 2);
    let calls = step["calls"].as_u64().unwrap();
    assert!(calls >= 2, "both slots made a call: {step}");
    assert_eq!(step["failed_calls"], 0, "{step}");
    // Each call: the question, then the goodbye (answered, or followed by the agent hanging up).
    let turns = step["turns"].as_u64().unwrap();
    assert!(turns >= calls && turns <= 2 * calls, "{step}");
    assert_eq!(step["missed"], 0, "every turn was answered: {step}");
    for key in ["p50", "p95", "p99", "max"] {
        assert!(
            step["latency_ms"][key].as_f64().unwrap() > 0.0,
            "{key}: {step}"
        );
    }
    let p = &step["latency_ms"];
    assert!(p["p50"].as_f64() <= p["p95"].as_f64() && p["p95"].as_f64() <= p["max"].as_f64());
    for key in ["endpoint_wait", "stt", "turn", "first_audio", "total"] {
        assert!(step["stages_ms"][key].is_number(), "{key}: {step}");
    }
    assert!(step["frames_received"].as_u64().unwrap() > 0);
    assert!(step["dropped_frames"].is_u64(), "{step}");
    assert!(step["cpu_percent"].as_f64().unwrap() > 0.0, "{step}");
    assert!(step["rss_mb_max"].as_f64().unwrap() > 10.0, "{step}");
    assert!(step["held"].is_null(), "no ramp, no verdict");
    assert!(report["soak"].is_null());
}
