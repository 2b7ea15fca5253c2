//! The knowledge base over HTTP: uploads of the generated fixtures (fixtures/knowledge, made by
//! fixtures/make-knowledge-fixtures), background processing to `ready` or `failed`, search,
//! agent links through versions, tenant isolation, recovery of a document whose worker died,
//! a call in which the agent answers a price from the menu, and hostile files built to exhaust
//! the reader (each fails alone while the engine, its other documents and a live call go on).

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{Response, TestApp, assert_error, spawn_app, spawn_app_with};

const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/knowledge")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A multipart/form-data body with one file field, as `curl -F "file=@NAME"` sends it.
fn form(field: &str, filename: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "------------------------cg7d1c0b3f5e";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; \
             filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(app: &TestApp, token: &str, filename: &str, bytes: &[u8]) -> Response {
    let (content_type, body) = form("file", filename, bytes);
    app.send_bytes(Method::POST, "/api/knowledge", token, &content_type, body)
        .await
}

/// Uploads a fixture and waits until it is processed; returns the final document.
async fn processed(app: &TestApp, token: &str, name: &str) -> Value {
    let r = upload(app, token, name, &fixture(name)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["status"], "pending");
    settle(app, token, r.body["id"].as_i64().unwrap()).await
}

/// The document once it is `ready` or `failed`. Polls quickly for two seconds, then once a
/// second, so that a slow document does not use up the token's request limit (120 a minute).
async fn settle(app: &TestApp, token: &str, id: i64) -> Value {
    for poll in 0..200 {
        let r = app.get(&format!("/api/knowledge/{id}"), token).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            // Polled past the per-token limit while a loaded machine reads slowly.
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        if matches!(r.body["status"].as_str(), Some("ready" | "failed")) {
            return r.body;
        }
        let pause = if poll < 20 { 100 } else { 1000 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    panic!("document {id} was never processed");
}

async fn search(app: &TestApp, token: &str, body: Value) -> Vec<Value> {
    let r = app.post("/api/knowledge/search", token, body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["results"].as_array().unwrap().clone()
}

async fn database(app: &TestApp) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(app.database_url.expose_secret())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_menu_pdf_and_a_faq_docx_become_searchable_with_pages_and_passages() {
    let app = spawn_app().await;
    let s = app
        .register("owner@trattoria.example", "Harbour Trattoria")
        .await;

    let menu = processed(&app, &s.token, "menu.pdf").await;
    assert_eq!(menu["status"], "ready", "{menu}");
    assert_eq!(menu["filename"], "menu.pdf");
    assert_eq!(menu["content_type"], "application/pdf");
    assert_eq!(menu["size"], fixture("menu.pdf").len());
    assert_eq!(menu["pages"], 2);
    assert_eq!(menu["chunks"], MENU_CHUNKS, "{menu}");
    assert!(menu["error"].is_null());
    assert_eq!(menu["agents"], json!([]));

    let faq = processed(&app, &s.token, "clinic-faq.docx").await;
    assert_eq!(faq["status"], "ready", "{faq}");
    assert_eq!(faq["content_type"], DOCX);
    assert_eq!(faq["pages"], 2);
    assert_eq!(faq["chunks"], FAQ_CHUNKS, "{faq}");

    let list = app.get("/api/knowledge", &s.token).await;
    let names: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["filename"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["menu.pdf", "clinic-faq.docx"]);

    // Paraphrased questions find the passage that answers them.
    let cases = [
        ("what does the margherita cost", "menu.pdf", "$18.50", 1),
        (
            "do you have a sweet Italian coffee dessert",
            "menu.pdf",
            "Tiramisu",
            2,
        ),
        (
            "what time do you open on Friday",
            "menu.pdf",
            "Friday to Sunday",
            2,
        ),
        (
            "are kids treated for free",
            "clinic-faq.docx",
            "Child Dental Benefits",
            1,
        ),
        ("where do I leave my car", "clinic-faq.docx", "parking", 2),
        (
            "what is the fee for teeth whitening",
            "clinic-faq.docx",
            "$450",
            2,
        ),
    ];
    for (query, file, expected, page) in cases {
        let hits = search(&app, &s.token, json!({ "query": query, "top_k": 3 })).await;
        assert_eq!(hits.len(), 3, "{query}");
        let best = &hits[0];
        assert!(
            best["filename"] == file && best["text"].as_str().unwrap().contains(expected),
            "{query:?}: best passage {best:#}"
        );
        assert_eq!(best["page"], page, "{query:?}: {best:#}");
        assert!(best["score"].as_f64().unwrap() > hits[2]["score"].as_f64().unwrap() - 1e-6);
    }
    // The corkage sentence shares its passage with the opening hours, so "wine" questions rank
    // the drinks list first (0.47 against 0.36 when measured); it is still among the three
    // passages a caller's turn is given, where the answer is picked sentence by sentence.
    let hits = search(
        &app,
        &s.token,
        json!({ "query": "can I bring my own bottle of wine", "top_k": 3 }),
    )
    .await;
    assert!(
        hits.iter()
            .any(|h| h["text"].as_str().unwrap().contains("Corkage is $5")),
        "{hits:#?}"
    );

    // Results name their document and headings.
    let hits = search(&app, &s.token, json!({ "query": "pizza prices" })).await;
    assert_eq!(hits.len(), 5, "top_k defaults to 5");
    assert!(
        hits[0]["heading"].as_str().unwrap().contains("Pizza"),
        "{:#}",
        hits[0]
    );
    assert_eq!(hits[0]["document_id"], menu["id"]);
}

/// Passages the fixtures make: one per section, as none is longer than a passage. The menu: the
/// introduction, Starters, Pizza, Pasta, Desserts, Drinks, Opening hours; the FAQ: its
/// introduction, Appointments, Children, Fees and payment (the table), Parking.
const MENU_CHUNKS: i64 = 7;
const FAQ_CHUNKS: i64 = 5;

#[tokio::test]
async fn unreadable_files_fail_with_a_reason_and_others_are_refused() {
    let app = spawn_app_with(|c| {
        c.limits.max_upload_bytes = 8 * 1024;
        c.limits.max_body_bytes = 1024;
    })
    .await;
    let s = app.register("owner@clinic.example", "Clinic").await;

    for (name, reason) in [
        ("broken.pdf", "damaged"),
        ("encrypted.pdf", "password"),
        ("scanned.pdf", "no text"),
    ] {
        let doc = processed(&app, &s.token, name).await;
        assert_eq!(doc["status"], "failed", "{name}: {doc}");
        let error = doc["error"].as_str().unwrap();
        assert!(error.to_lowercase().contains(reason), "{name}: {error}");
        assert_eq!(doc["chunks"], 0);
    }

    // A text file named .pdf, an empty file, no file field, not multipart: 422 naming `file`.
    let refused = [
        upload(&app, &s.token, "notes.pdf", &fixture("notes.pdf")).await,
        upload(&app, &s.token, "empty.pdf", b"").await,
        {
            let (content_type, body) = form("document", "menu.pdf", b"%PDF-1.4");
            app.send_bytes(
                Method::POST,
                "/api/knowledge",
                &s.token,
                &content_type,
                body,
            )
            .await
        },
        app.post("/api/knowledge", &s.token, json!({ "file": "menu.pdf" }))
            .await,
    ];
    for r in refused {
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.body["errors"]["file"].is_array(), "{}", r.body);
    }

    // Over the (here 8 KiB) limit: 413 in the JSON error shape, and nothing stored.
    let big = [b"%PDF-1.4\n".as_slice(), &vec![b'x'; 9 * 1024]].concat();
    let r = upload(&app, &s.token, "big.pdf", &big).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE);
    let list = app.get("/api/knowledge", &s.token).await;
    assert_eq!(list.body.as_array().unwrap().len(), 3);

    // Nothing failed is searchable.
    assert!(
        search(&app, &s.token, json!({ "query": "menu" }))
            .await
            .is_empty()
    );

    // Uploads have their own limit: a document over the JSON body limit (here 1 KiB) is taken.
    let faq = processed(&app, &s.token, "clinic-faq.docx").await;
    assert!(faq["size"].as_i64().unwrap() > 1024);
    assert_eq!(faq["status"], "ready", "{faq}");
}

/// A business with both fixtures processed: its session and the menu's and the FAQ's ids.
async fn trattoria_with_both(app: &TestApp) -> (crate::helpers::Session, i64, i64) {
    let s = app
        .register("owner@trattoria.example", "Harbour Trattoria")
        .await;
    let menu = processed(app, &s.token, "menu.pdf").await;
    let faq = processed(app, &s.token, "clinic-faq.docx").await;
    (s, menu["id"].as_i64().unwrap(), faq["id"].as_i64().unwrap())
}

#[tokio::test]
async fn agents_link_documents_through_their_versions() {
    let app = spawn_app().await;
    let (s, menu_id, faq_id) = trattoria_with_both(&app).await;

    let mut body = crate::helpers::reception("Host");
    body["knowledge_ids"] = json!([menu_id]);
    let r = app.post("/api/agents", &s.token, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let agent = r.body["id"].as_i64().unwrap();
    assert_eq!(r.body["knowledge_ids"], json!([menu_id]));
    let instructions = r.body["compiled_instructions"].as_str().unwrap();
    assert!(instructions.contains("- menu.pdf\n"), "{instructions}");

    let doc = app
        .get(&format!("/api/knowledge/{menu_id}"), &s.token)
        .await;
    assert_eq!(doc.body["agents"], json!([agent]));

    // Search through the agent sees its documents only.
    let hits = search(
        &app,
        &s.token,
        json!({ "query": "where can I park", "agent_id": agent }),
    )
    .await;
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| h["document_id"] == menu_id), "{hits:?}");

    // Unknown ids are refused with every other field error at once.
    let r = app
        .patch(
            &format!("/api/agents/{agent}"),
            &s.token,
            json!({ "knowledge_ids": [menu_id, 999_999], "humour_level": 99 }),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body["errors"]["knowledge_ids"][0]
            .as_str()
            .unwrap()
            .contains("999999")
    );
    assert!(r.body["errors"]["humour_level"].is_array());
    let r = app
        .patch(
            &format!("/api/agents/{agent}"),
            &s.token,
            json!({ "knowledge_ids": "menu" }),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);

    // Version 2 links both; version 3 none; rolling back to 2 restores both.
    let r = app
        .patch(
            &format!("/api/agents/{agent}"),
            &s.token,
            json!({ "knowledge_ids": [faq_id, menu_id, faq_id] }),
        )
        .await;
    assert_eq!(
        r.body["knowledge_ids"],
        json!([menu_id, faq_id]),
        "id order, no repeats"
    );
    let r = app
        .patch(
            &format!("/api/agents/{agent}"),
            &s.token,
            json!({ "knowledge_ids": null }),
        )
        .await;
    assert_eq!(r.body["knowledge_ids"], json!([]));
    assert!(
        r.body["compiled_instructions"]
            .as_str()
            .unwrap()
            .contains("No knowledge documents")
    );
    let list = app.get("/api/knowledge", &s.token).await;
    assert!(
        list.body
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["agents"] == json!([]))
    );
    let r = app
        .post(
            &format!("/api/agents/{agent}/versions/2/rollback"),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["knowledge_ids"], json!([menu_id, faq_id]));
    let v2 = app
        .get(&format!("/api/agents/{agent}/versions/2"), &s.token)
        .await;
    assert_eq!(v2.body["knowledge_ids"], json!([menu_id, faq_id]));

    // Deleting a document unlinks it at once and takes its passages with it.
    let r = app
        .delete(&format!("/api/knowledge/{faq_id}"), &s.token)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app.get(&format!("/api/agents/{agent}"), &s.token).await;
    assert_eq!(r.body["knowledge_ids"], json!([menu_id]));
    let hits = search(
        &app,
        &s.token,
        json!({ "query": "where can I park", "top_k": 20 }),
    )
    .await;
    assert!(hits.iter().all(|h| h["document_id"] == menu_id), "{hits:?}");
    assert_error(
        &app.get(&format!("/api/knowledge/{faq_id}"), &s.token).await,
        StatusCode::NOT_FOUND,
    );
    // A rollback to a version that linked it links only what still exists.
    let r = app
        .post(
            &format!("/api/agents/{agent}/versions/2/rollback"),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(r.body["knowledge_ids"], json!([menu_id]));
    let instructions = r.body["compiled_instructions"].as_str().unwrap();
    assert!(!instructions.contains("clinic-faq.docx"), "{instructions}");
}

#[tokio::test]
async fn documents_and_searches_never_cross_tenants_or_roles() {
    let app = spawn_app().await;
    let owner = app
        .register("owner@trattoria.example", "Harbour Trattoria")
        .await;
    let other = app.register("owner@clinic.example", "Clinic").await;
    let menu = processed(&app, &owner.token, "menu.pdf").await;
    let id = menu["id"].as_i64().unwrap();
    let agent = app.create_agent(&owner.token, "Host").await;

    for r in [
        app.get(&format!("/api/knowledge/{id}"), &other.token).await,
        app.delete(&format!("/api/knowledge/{id}"), &other.token)
            .await,
        app.post(
            "/api/knowledge/search",
            &other.token,
            json!({ "query": "pizza", "agent_id": agent }),
        )
        .await,
    ] {
        assert_error(&r, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        app.get("/api/knowledge", &other.token).await.body,
        json!([])
    );
    assert!(
        search(&app, &other.token, json!({ "query": "margherita pizza" }))
            .await
            .is_empty()
    );
    let mut body = crate::helpers::reception("Thief");
    body["knowledge_ids"] = json!([id]);
    assert_error(
        &app.post("/api/agents", &other.token, body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert_eq!(
        app.get(&format!("/api/knowledge/{id}"), &owner.token)
            .await
            .status,
        StatusCode::OK
    );

    // Search input is checked.
    let r = app
        .post(
            "/api/knowledge/search",
            &owner.token,
            json!({ "query": "", "top_k": 0 }),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body["errors"]["query"].is_array() && r.body["errors"]["top_k"].is_array(),
        "{}",
        r.body
    );

    // Members read and search; only owners and admins upload and delete.
    let member = app
        .register("member@trattoria.example", "Member's own")
        .await;
    let r = app
        .post(
            "/api/members",
            &owner.token,
            json!({ "email": "member@trattoria.example" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .post(
            "/api/tenants/switch",
            &member.token,
            json!({ "tenant_id": owner.tenant_id }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        search(&app, &member.token, json!({ "query": "pizza" }))
            .await
            .len(),
        5
    );
    assert_error(
        &upload(&app, &member.token, "menu.pdf", &fixture("menu.pdf")).await,
        StatusCode::FORBIDDEN,
    );
    assert_error(
        &app.delete(&format!("/api/knowledge/{id}"), &member.token)
            .await,
        StatusCode::FORBIDDEN,
    );
}

#[tokio::test]
async fn a_document_whose_worker_died_is_processed_again_and_given_up_after_three_tries() {
    let app = spawn_app().await;
    let (s, menu_id, faq_id) = trattoria_with_both(&app).await;

    // What a worker killed mid-document leaves behind: `processing`, a lapsed lease, no
    // passages (the menu: first attempt; the FAQ: its third).
    let mut db = database(&app).await;
    for (id, attempts) in [(menu_id, 1), (faq_id, 3)] {
        sqlx::query("DELETE FROM knowledge_chunks WHERE document_id = $1")
            .bind(id)
            .execute(&mut db)
            .await
            .unwrap();
        sqlx::query(
            "UPDATE knowledge_documents SET status = 'processing', chunks = 0, attempts = $1, \
             lease_until = '2000-01-01T00:00:00.000Z' WHERE id = $2",
        )
        .bind(attempts)
        .bind(id)
        .execute(&mut db)
        .await
        .unwrap();
    }
    let menu = settle(&app, &s.token, menu_id).await;
    assert_eq!(menu["status"], "ready", "{menu}");
    assert_eq!(menu["chunks"], MENU_CHUNKS);
    let faq = settle(&app, &s.token, faq_id).await;
    assert_eq!(faq["status"], "failed", "{faq}");
    assert!(
        faq["error"].as_str().unwrap().contains("interrupted"),
        "{faq}"
    );
    let (stored,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM knowledge_chunks WHERE document_id = $1")
            .bind(menu_id)
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(stored, MENU_CHUNKS, "one attempt's passages, not two");
    let hits = search(&app, &s.token, json!({ "query": "margherita", "top_k": 1 })).await;
    assert!(hits[0]["text"].as_str().unwrap().contains("$18.50"));
}

/// The whole path: `callgenius call` phones an agent linked to the menu and asks a price; the
/// embedded responder finds it in the menu and says it.
#[tokio::test]
async fn a_caller_asks_a_price_and_the_agent_reads_it_from_the_menu() {
    let app = crate::helpers::spawn_ready_app_with(|_| {}).await;
    let s = app
        .register("owner@trattoria.example", "Harbour Trattoria")
        .await;
    let menu = processed(&app, &s.token, "menu.pdf").await;
    let r = app
        .post(
            "/api/agents",
            &s.token,
            json!({ "name": "Harbour Trattoria", "voice": "aria", "language": "en-AU",
                    "system_prompt": "You are the host at Harbour Trattoria.",
                    "turn_engine": "embedded", "knowledge_ids": [menu["id"]] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let agent = r.body["id"].as_i64().unwrap();

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/conversations");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_callgenius"));
    command
        .args([
            "call",
            "--url",
            &app.base,
            "--agent",
            &agent.to_string(),
            "--json",
        ])
        .args(["--carrier", "twilio", "--from", "+61255501234"])
        .arg("--audio")
        .arg(dir.join("menu-joe-1.wav"))
        .arg("--audio")
        .arg(dir.join("menu-joe-2.wav"))
        .env("CALLGENIUS_TOKEN", &s.token);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "callgenius call failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let call = report["call_id"].as_i64().expect("call id in the report");

    let transcript = app
        .get(&format!("/api/calls/{call}/transcript"), &s.token)
        .await;
    let lines = transcript.body.as_array().unwrap();
    let agent_lines: Vec<&str> = lines
        .iter()
        .filter(|l| l["speaker"] == "agent")
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert!(
        agent_lines
            .iter()
            .any(|t| t.contains("ravioli") && t.contains("$25.00")),
        "no price in the agent's replies: {transcript:#?}",
        transcript = transcript.body
    );
}

/// With an LLM, each caller turn's request carries the passages found for the caller's words in
/// its system message; a model that reads them answers the price.
#[tokio::test]
async fn the_llm_is_given_the_passages_for_each_caller_turn() {
    use crate::llm_server::{Answer, LlmServer, messages};
    use callgenius::config::LlmSettings;
    use std::sync::Arc;

    let llm = LlmServer::start(Arc::new(|request: &Value| {
        let system = messages(request, "system")[0]["content"]
            .as_str()
            .unwrap_or_default();
        let ravioli = system
            .lines()
            .find(|l| l.starts_with("Pumpkin ravioli"))
            .and_then(|l| l.rsplit(' ').next());
        Answer::Text(match ravioli {
            Some(price) => format!("The pumpkin ravioli is {price}."),
            None => "Thanks for calling, goodbye.".into(),
        })
    }))
    .await;
    let base_url = llm.base_url.clone();
    let app = spawn_app_with(move |c| {
        c.llm = Some(LlmSettings {
            base_url,
            model: "test-model".into(),
            api_key: None,
            timeout_ms: 5_000,
            retries: 1,
        })
    })
    .await;
    let s = app
        .register("owner@trattoria.example", "Harbour Trattoria")
        .await;
    let menu = processed(&app, &s.token, "menu.pdf").await;
    let mut body = crate::helpers::reception("Harbour Trattoria");
    body["knowledge_ids"] = json!([menu["id"]]);
    let r = app.post("/api/agents", &s.token, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let agent = r.body["id"].as_i64().unwrap();

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/conversations");
    let audio =
        |n: usize| callgenius::pipeline::wav::read(&dir.join(format!("menu-joe-{n}.wav"))).unwrap();
    let report = callgenius::simulator::run(callgenius::simulator::CallPlan {
        base_url: app.base.clone(),
        api_token: s.token.clone(),
        agent_id: agent,
        caller: audio(1),
        then: vec![audio(2)],
        pause: Duration::from_millis(800),
        speed: 1.0,
        quiet: Duration::from_secs(2),
        carrier: callgenius::simulator::SimCarrier::Twilio,
        from: Some("+61255501234".into()),
    })
    .await
    .unwrap();

    let requests: Vec<Value> = llm
        .requests()
        .into_iter()
        .filter(|r| r["stream"] == true)
        .collect();
    let first = messages(&requests[0], "system")[0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        first.contains("- menu.pdf\n"),
        "the instructions name it: {first}"
    );
    assert!(
        first.contains("# Excerpts for the caller's last words\n")
            && first.contains("menu.pdf, page 2, Harbour Trattoria Menu > Pasta:\n"),
        "{first}"
    );
    let transcript = app
        .get(
            &format!("/api/calls/{}/transcript", report.call_id),
            &s.token,
        )
        .await;
    let said: Vec<&str> = transcript
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["speaker"] == "agent")
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert!(said.contains(&"The pumpkin ravioli is $25.00."), "{said:?}");
}

/// The sentence every file that could not be read safely fails with.
const UNSAFE: &str = "the file could not be read safely";

/// Uploads a hostile fixture over HTTP and checks that it failed for good, once: `failed` with
/// the safe-reading error (containing `detail`), one attempt, and still so a while later.
async fn refused_safely(app: &TestApp, token: &str, name: &str, detail: &str) -> i64 {
    let r = upload(app, token, name, &fixture(name)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    let doc = settle(app, token, id).await;
    assert_eq!(doc["status"], "failed", "{name}: {doc}");
    assert_eq!(doc["chunks"], 0, "{name}: {doc}");
    let error = doc["error"].as_str().unwrap();
    assert!(error.starts_with(UNSAFE), "{name}: {error}");
    assert!(error.contains(detail), "{name}: {error}");
    id
}

/// A failure that ends the attempt is final: the worker never claims the document again.
async fn assert_tried_once(app: &TestApp, ids: &[i64]) {
    let mut db = database(app).await;
    for &id in ids {
        let (status, attempts): (String, i64) =
            sqlx::query_as("SELECT status, attempts FROM knowledge_documents WHERE id = $1")
                .bind(id)
                .fetch_one(&mut db)
                .await
                .unwrap();
        assert_eq!((status.as_str(), attempts), ("failed", 1), "document {id}");
    }
}

/// After a hostile file, the engine is alive and its worker still reads good documents.
async fn still_serving(app: &TestApp, token: &str) {
    let health = app.client.get(format!("{}/healthz", app.base)).send().await;
    assert_eq!(health.unwrap().status(), StatusCode::OK);
    let menu = processed(app, token, "menu.pdf").await;
    assert_eq!(menu["status"], "ready", "{menu}");
    assert_eq!(menu["chunks"], MENU_CHUNKS);
    let hits = search(app, token, json!({ "query": "margherita", "top_k": 1 })).await;
    assert!(hits[0]["text"].as_str().unwrap().contains("$18.50"));
}

#[tokio::test]
async fn a_pdf_form_that_draws_itself_fails_safely_and_the_engine_goes_on() {
    let app = spawn_app().await;
    let s = app.register("owner@trattoria.example", "Trattoria").await;
    let id = refused_safely(&app, &s.token, "self-drawing.pdf", "draws itself").await;
    still_serving(&app, &s.token).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_tried_once(&app, &[id]).await;
}

#[tokio::test]
async fn ten_thousand_nested_pdf_forms_fail_safely_and_the_engine_goes_on() {
    let app = spawn_app().await;
    let s = app.register("owner@trattoria.example", "Trattoria").await;
    let id = refused_safely(
        &app,
        &s.token,
        "nested-forms.pdf",
        "nested more than 32 deep",
    )
    .await;
    still_serving(&app, &s.token).await;
    assert_tried_once(&app, &[id]).await;
}

#[tokio::test]
async fn a_pdf_flate_bomb_fails_safely_and_the_engine_goes_on() {
    let app = spawn_app().await;
    let s = app.register("owner@trattoria.example", "Trattoria").await;
    let id = refused_safely(&app, &s.token, "flate-bomb.pdf", "more than 64 MiB").await;
    still_serving(&app, &s.token).await;
    assert_tried_once(&app, &[id]).await;
}

/// How the child's limits end the cross-reference bomb: lopdf's reads meet the memory limit
/// as a failed allocation, which the standard library reports as an error, so lopdf gives the
/// file up as damaged; or the child uses up its CPU time first and is killed.
const XREF_BOMB_ENDINGS: [&str; 2] = [
    "the file could not be read safely: the reader crashed or went past its limits",
    "the file is damaged and could not be read",
];

/// lopdf unpacks a cross-reference stream before anything can check it: 4 GiB allocated in
/// the engine's process would take it (and this test binary, which hosts the engine) down.
/// In the child, its memory and CPU limits stop it.
#[tokio::test]
async fn a_flate_bomb_in_the_cross_reference_stream_is_stopped_by_the_childs_limits() {
    let app = spawn_app().await;
    let s = app.register("owner@trattoria.example", "Trattoria").await;
    let r = upload(&app, &s.token, "xref-bomb.pdf", &fixture("xref-bomb.pdf")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    let doc = settle(&app, &s.token, id).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    let error = doc["error"].as_str().unwrap();
    assert!(
        XREF_BOMB_ENDINGS.iter().any(|e| error.starts_with(e)),
        "{error}"
    );
    still_serving(&app, &s.token).await;
    assert_tried_once(&app, &[id]).await;
}

#[tokio::test]
async fn a_docx_zip_bomb_fails_safely_and_the_engine_goes_on() {
    let app = spawn_app().await;
    let s = app.register("owner@clinic.example", "Clinic").await;
    let id = refused_safely(
        &app,
        &s.token,
        "zip-bomb.docx",
        "more than its headers declare",
    )
    .await;
    let faq = processed(&app, &s.token, "clinic-faq.docx").await;
    assert_eq!(faq["status"], "ready", "{faq}");
    assert_eq!(faq["chunks"], FAQ_CHUNKS);
    still_serving(&app, &s.token).await;
    assert_tried_once(&app, &[id]).await;
}

/// A reader that cannot be started is this machine's problem, not the file's: the document is
/// not failed, but left for another attempt once its lease lapses.
#[tokio::test]
async fn a_reader_that_cannot_start_does_not_fail_the_document() {
    let app = spawn_app_with(|c| {
        c.extraction.program = Some("/nonexistent/callgenius".into());
    })
    .await;
    let s = app.register("owner@trattoria.example", "Trattoria").await;
    let r = upload(&app, &s.token, "menu.pdf", &fixture("menu.pdf")).await;
    let id = r.body["id"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let doc = app
        .get(&format!("/api/knowledge/{id}"), &s.token)
        .await
        .body;
    assert_eq!(doc["status"], "processing", "{doc}");
    assert!(doc["error"].is_null(), "{doc}");
}

/// Whether every document of the business has failed.
async fn all_failed(app: &TestApp, token: &str) -> bool {
    let list = app.get("/api/knowledge", token).await;
    list.body
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["status"] == "failed")
}

/// A live call keeps talking while every hostile file is read: the agent answers the caller
/// between uploads, while the documents are still being read, and after they have all failed.
#[tokio::test]
async fn a_live_call_keeps_talking_while_hostile_uploads_are_read() {
    use crate::media::{Twilio, caller_frames, connect, count, settled_call, test_call};

    /// The agent's next reply, from its first audio frame until it has been quiet for 2.5 s:
    /// how many frames it sent.
    async fn hear(twilio: &mut Twilio) -> usize {
        let first = twilio
            .read_until(Duration::from_secs(60), |m| m["event"] == "media")
            .await;
        let rest = twilio
            .read_while_talking(Duration::from_millis(2500), Duration::from_secs(60))
            .await;
        count(&first, "media") + count(&rest, "media")
    }

    let app = spawn_app().await;
    let s = app.register("owner@trattoria.example", "Trattoria").await;
    let (call_id, url, token) = test_call(&app, &s).await;
    let mut twilio = connect(&url, &token).await;
    assert!(hear(&mut twilio).await > 50, "the greeting is heard");

    let hostile = [
        ("self-drawing.pdf", "draws itself"),
        ("nested-forms.pdf", "nested more than 32 deep"),
        ("flate-bomb.pdf", "more than 64 MiB"),
        ("zip-bomb.docx", "more than its headers declare"),
        ("xref-bomb.pdf", ""),
    ];
    let mut ids = Vec::new();
    for (name, _) in hostile {
        let r = upload(&app, &s.token, name, &fixture(name)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        ids.push(r.body["id"].as_i64().unwrap());
    }

    // The caller talks while the documents are read, and once more after.
    let question = caller_frames("s3-piper-joe-8k-ulaw.wav", 500, 1200);
    let mut answered_during = 0;
    let mut turns = 1;
    loop {
        let done = all_failed(&app, &s.token).await;
        twilio.send_audio(&question).await;
        let frames = hear(&mut twilio).await;
        turns += 1;
        assert!(frames > 50, "turn {turns}: {frames} frames");
        if done {
            break;
        }
        answered_during += 1;
        assert!(turns < 30, "the documents were never all read");
    }
    assert!(
        answered_during >= 1,
        "the agent answered while documents were read"
    );

    for (&id, (name, detail)) in ids.iter().zip(hostile) {
        let doc = app
            .get(&format!("/api/knowledge/{id}"), &s.token)
            .await
            .body;
        let error = doc["error"].as_str().unwrap();
        let expected = if name == "xref-bomb.pdf" {
            XREF_BOMB_ENDINGS.iter().any(|e| error.starts_with(e))
        } else {
            error.starts_with(UNSAFE) && error.contains(detail)
        };
        assert!(expected, "{name}: {doc}");
    }
    assert_tried_once(&app, &ids).await;

    twilio
        .send(json!({ "event": "stop", "streamSid": "MZ1", "stop": { "callSid": "CAtest" } }))
        .await;
    twilio
        .read_until(Duration::from_secs(10), |m| m["event"] == "close")
        .await;
    let call = settled_call(&app, &s, call_id, |c| c["status"] == "completed").await;
    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["turns"].as_array().unwrap().len(), turns, "{call}");
}
