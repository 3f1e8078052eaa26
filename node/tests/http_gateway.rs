//! The HTTP gateway with a real HTTP client: raw and JSON puts, the custom
//! `UPDATE` method, percent-encoded keys (slashes, arbitrary bytes),
//! conditional requests, listing, and limits.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_gateway_serves_the_kv_api() {
    let t = common::start_node(&[]);
    let base = t.node.http_url();
    let c = Client::new();

    // Raw PUT creates (201), second PUT replaces (200), GET returns raw bytes.
    let url = format!("{base}/store/greeting");
    let r = c.put(&url).body("hello").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["version"], 1);
    assert_eq!(created["created"], true);
    let r = c.put(&url).body("hello again").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(r.headers()["x-cairn-version"], "2");
    assert!(r.headers().contains_key("x-cairn-revision"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"hello again");

    // UPDATE as a method, and PATCH: 404 when absent, 200 when present.
    let r = c
        .request(method("UPDATE"), format!("{base}/store/nope"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["code"], "key_not_found");
    assert!(err["error"].as_str().unwrap().contains("not found"));
    let r = c.get(format!("{base}/store/nope")).send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "failed UPDATE must not create the key"
    );
    let r = c
        .request(method("UPDATE"), &url)
        .body("updated")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c.patch(&url).body("patched").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        c.get(&url).send().await.unwrap().text().await.unwrap(),
        "patched"
    );

    // Conditional writes: stale If-Match → 412; If-None-Match: * on an existing key → 412;
    // ?if_absent → 409.
    let r = c
        .put(&url)
        .header("if-match", etag.as_str())
        .body("stale")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = c
        .put(&url)
        .header("if-none-match", "*")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = c
        .put(format!("{url}?if_absent=true"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "key_exists");
    let cur = c.get(&url).send().await.unwrap();
    let cur_etag = cur.headers()["etag"].to_str().unwrap().to_string();
    let r = c
        .put(&url)
        .header("if-match", cur_etag)
        .body("guarded")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Keys with slashes and arbitrary bytes, percent-encoded.
    let r = c
        .put(format!("{base}/store/a/b/c"))
        .body("slashes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        c.get(format!("{base}/store/a%2Fb%2Fc"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "slashes"
    );
    let r = c
        .put(format!("{base}/store/bin%00%FF%20key"))
        .body(vec![0u8, 1, 2])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = c
        .get(format!("{base}/store/bin%00%ff%20key"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), &[0u8, 1, 2]);
    // The same key through gRPC: the HTTP key bytes are exactly the decoded path.
    let mut kv = cairn_testkit::conformance::connect(&t.node.grpc_url()).await;
    let v = cairn_testkit::conformance::value_of(
        &mut kv,
        &[b'b', b'i', b'n', 0, 0xff, b' ', b'k', b'e', b'y'],
    )
    .await;
    assert_eq!(v.unwrap().value, vec![0u8, 1, 2]);

    // JSON PUT /store, with TTL and base64.
    let r = c
        .put(format!("{base}/store"))
        .json(&serde_json::json!({"key": "json-key", "value": "json value", "ttl_seconds": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .get(format!("{base}/store/json-key"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("x-cairn-expires-at-ms"));
    assert_eq!(r.text().await.unwrap(), "json value");
    // ?return_previous=true answers with the value replaced.
    let r = c
        .put(format!("{base}/store?return_previous=true"))
        .json(&serde_json::json!({"key": "json-key", "value": "second"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let replaced: Value = r.json().await.unwrap();
    assert_eq!(replaced["previous"]["value"], "json value");
    assert_eq!(replaced["version"], 2);
    let r = c
        .put(format!("{base}/store"))
        .json(&serde_json::json!({"key": "AAE=", "value": "/w==", "encoding": "base64"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        c.get(format!("{base}/store/%00%01"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        &[0xffu8]
    );

    // Idempotency-Key makes a retried write exactly-once: same answer, applied once.
    let once = format!("{base}/store/once");
    let first = c
        .put(&once)
        .header("idempotency-key", "k-123")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let retry = c
        .put(&once)
        .header("idempotency-key", "k-123")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        retry.status(),
        StatusCode::CREATED,
        "the retry gets the original answer"
    );
    assert_eq!(
        c.get(&once).send().await.unwrap().headers()["x-cairn-version"],
        "1"
    );
    let reused = c
        .put(&once)
        .header("idempotency-key", "k-123")
        .body("other")
        .send()
        .await
        .unwrap();
    assert_eq!(reused.status(), StatusCode::CONFLICT);
    assert_eq!(
        reused.json::<Value>().await.unwrap()["code"],
        "request_id_reused"
    );

    // DELETE: 204 then 404.
    assert_eq!(
        c.delete(format!("{base}/store/a/b/c"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.delete(format!("{base}/store/a/b/c"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );

    // Listing by prefix with pages.
    for i in 0..25 {
        c.put(format!("{base}/store/list/{i:02}"))
            .body(format!("v{i}"))
            .send()
            .await
            .unwrap();
    }
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut u = format!("{base}/store?prefix=list/&limit=10");
        if let Some(t) = &token {
            u.push_str(&format!("&page_token={t}"));
        }
        let page: Value = c.get(u).send().await.unwrap().json().await.unwrap();
        for item in page["items"].as_array().unwrap() {
            keys.push(item["key"].as_str().unwrap().to_string());
            assert_eq!(item["encoding"], "utf8");
        }
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    let want: Vec<String> = (0..25).map(|i| format!("list/{i:02}")).collect();
    assert_eq!(keys, want);
    let page: Value = c
        .get(format!("{base}/store?prefix=bin"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"][0]["encoding"], "base64");

    // A body over the value limit is refused with 413 naming the limit, and stores nothing.
    let big = vec![b'x'; 8 * 1024 * 1024 + 1];
    let r = c
        .put(format!("{base}/store/too-big"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let err: Value = r.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("8388608"), "{err}");
    assert_eq!(
        c.get(format!("{base}/store/too-big"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    // Exactly at the limit is fine.
    let r = c
        .put(format!("{base}/store/at-limit"))
        .body(vec![b'y'; 8 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}
