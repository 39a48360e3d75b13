//! The reference §11 conformance checklist, over real HTTP against the
//! embedded server, plus the other rules of §2–§7 it implements.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{TestServer, event, header, link, location, uuid};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Builds the checklist's stream: 1 event, then a batch of 3 (events 0..=3).
async fn four_events(raw: &common::Raw, s: &str) {
    let r =
        raw.post_batch(s, Some("-1"), &json!([event(&uuid(1), "Created", json!({"n": 0}))])).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let batch = json!([
        event(&uuid(2), "Updated", json!({"n": 1})),
        event(&uuid(3), "Updated", json!({"n": 2})),
        event(&uuid(4), "Updated", json!({"n": 3})),
    ]);
    let r = raw.post_batch(s, Some("0"), &batch).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn append_create_with_no_stream_is_201_with_absolute_location_of_event_0() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    let r = raw
        .post_batch("order-1", Some("-1"), &json!([event(&uuid(1), "Created", json!({"a": 1}))]))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(location(&r), format!("{}/streams/order-1/0", srv.url));
    assert_eq!(header(r.headers(), "content-type").as_deref(), Some("text/plain; charset=utf-8"));
}

#[tokio::test]
async fn append_same_request_again_is_idempotent_and_writes_nothing() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    let body = json!([event(&uuid(1), "Created", json!({"a": 1}))]);
    for _ in 0..3 {
        let r = raw.post_batch("s", Some("-1"), &body).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert!(location(&r).ends_with("/streams/s/0"));
    }
    let (_, _, feed) = raw.get_json("/streams/s/0/forward/20").await;
    assert_eq!(feed["entries"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn append_batch_with_expected_version_points_location_at_first_event() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    let r = raw.post_batch("s", Some("-1"), &json!([event(&uuid(1), "A", json!({}))])).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let batch = json!([
        event(&uuid(2), "B", json!({})),
        event(&uuid(3), "B", json!({})),
        event(&uuid(4), "B", json!({}))
    ]);
    let r = raw.post_batch("s", Some("0"), &batch).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(location(&r).ends_with("/streams/s/1"));
}

#[tokio::test]
async fn wrong_expected_version_is_400_empty_with_both_current_version_headers() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    four_events(&raw, "s").await;
    let r = raw.post_batch("s", Some("0"), &json!([event(&uuid(9), "X", json!({}))])).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(r.headers(), "es-currentversion").as_deref(), Some("3"));
    assert_eq!(header(r.headers(), "kurrent-currentversion").as_deref(), Some("3"));
    assert_eq!(r.text().await.unwrap(), "");
    // Expecting a version beyond the end is a conflict too.
    let r = raw.post_batch("s", Some("7"), &json!([event(&uuid(9), "X", json!({}))])).await;
    assert_eq!(header(r.headers(), "es-currentversion").as_deref(), Some("3"));
}

#[tokio::test]
async fn stream_exists_on_a_new_stream_is_400_with_current_version_minus_1() {
    let srv = TestServer::start().await;
    let r =
        srv.raw().post_batch("new", Some("-4"), &json!([event(&uuid(1), "X", json!({}))])).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(r.headers(), "es-currentversion").as_deref(), Some("-1"));
    let r = srv.raw().post_batch("new", Some("3"), &json!([event(&uuid(1), "X", json!({}))])).await;
    assert_eq!(header(r.headers(), "es-currentversion").as_deref(), Some("-1"));
}

#[tokio::test]
async fn retry_of_a_batch_with_any_is_idempotent_with_the_original_location() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    four_events(&raw, "s").await;
    let batch = json!([
        event(&uuid(2), "Updated", json!({})),
        event(&uuid(3), "Updated", json!({})),
        event(&uuid(4), "Updated", json!({}))
    ]);
    let r = raw.post_batch("s", Some("-2"), &batch).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(location(&r).ends_with("/streams/s/1"));
    // Without the header (= -2) too.
    let r = raw.post_batch("s", None, &batch).await;
    assert!(location(&r).ends_with("/streams/s/1"));
    let (_, _, feed) = raw.get_json("/streams/s/0/forward/20").await;
    assert_eq!(feed["entries"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn batch_whose_first_id_is_known_and_second_new_is_400_corrupted_idempotency() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    four_events(&raw, "s").await;
    let r = raw
        .post_batch(
            "s",
            Some("-2"),
            &json!([event(&uuid(2), "U", json!({})), event(&uuid(50), "U", json!({}))]),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(r.headers(), "es-currentversion").as_deref(), Some("3"));
}

#[tokio::test]
async fn strong_idempotency_replays_a_batch_below_the_current_version() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    four_events(&raw, "s").await;
    // The batch that was written with expected 0, sent again with 0.
    let batch = json!([
        event(&uuid(2), "U", json!({})),
        event(&uuid(3), "U", json!({})),
        event(&uuid(4), "U", json!({}))
    ]);
    let r = raw.post_batch("s", Some("0"), &batch).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(location(&r).ends_with("/streams/s/1"));
    // Same with a mismatching later id: conflict.
    let batch = json!([event(&uuid(2), "U", json!({})), event(&uuid(99), "U", json!({}))]);
    let r = raw.post_batch("s", Some("0"), &batch).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // -1 on an existing stream whose first event is the batch's: idempotent.
    let r = raw.post_batch("s", Some("-1"), &json!([event(&uuid(1), "Created", json!({}))])).await;
    assert!(location(&r).ends_with("/streams/s/0"));
}

#[tokio::test]
async fn forward_pages_are_newest_first_with_head_of_stream_and_links_per_4_5() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    four_events(&raw, "s").await;
    let base = format!("{}/streams/s", srv.url);

    let (status, _, feed) = raw.get_json("/streams/s/0/forward/2").await;
    assert_eq!(status, StatusCode::OK);
    let titles: Vec<_> = feed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(titles, ["1@s", "0@s"]);
    assert_eq!(feed["headOfStream"], false);
    assert_eq!(link(&feed, "previous"), Some(format!("{base}/2/forward/2").as_str()));
    assert_eq!(link(&feed, "self"), Some(base.as_str()));
    assert_eq!(link(&feed, "first"), Some(format!("{base}/head/backward/2").as_str()));
    assert_eq!(link(&feed, "last"), None, "a page from 0 has no last/next");
    assert_eq!(feed["title"], "Event stream 's'");
    assert_eq!(feed["streamId"], "s");

    let (_, _, feed) = raw.get_json("/streams/s/0/forward/4").await;
    assert_eq!(feed["headOfStream"], true);
    assert_eq!(link(&feed, "previous"), Some(format!("{base}/4/forward/4").as_str()));

    let (_, _, feed) = raw.get_json("/streams/s/2/forward/1").await;
    assert_eq!(link(&feed, "last"), Some(format!("{base}/0/forward/1").as_str()));
    assert_eq!(link(&feed, "next"), Some(format!("{base}/1/backward/1").as_str()));

    let (status, _, feed) = raw.get_json("/streams/s/4/forward/20").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(feed["entries"], json!([]));
    assert_eq!(feed["headOfStream"], true);
    assert_eq!(link(&feed, "previous"), None);
}

#[tokio::test]
async fn head_backward_feed_has_head_of_stream_previous_link_and_etag_with_304() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    four_events(&raw, "s").await;
    let base = format!("{}/streams/s", srv.url);
    let (status, headers, feed) = raw.get_json("/streams/s").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(feed["headOfStream"], true);
    assert_eq!(link(&feed, "previous"), Some(format!("{base}/4/forward/20").as_str()));
    assert!(feed["eTag"].is_string());
    assert_eq!(feed["selfUrl"], base.as_str());
    let titles: Vec<_> =
        feed["entries"].as_array().unwrap().iter().map(|e| e["title"].clone()).collect();
    assert_eq!(titles, ["3@s", "2@s", "1@s", "0@s"]);
    let etag = header(&headers, "etag").expect("etag header");
    assert_eq!(
        header(&headers, "cache-control").as_deref(),
        Some("max-age=0, no-cache, must-revalidate")
    );
    let r = raw
        .req(Method::GET, "/streams/s")
        .header("Accept", "application/json")
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);

    // `head/backward/2` pages down with next/last links.
    let (_, _, feed) = raw.get_json("/streams/s/head/backward/2").await;
    assert_eq!(feed["headOfStream"], true);
    assert_eq!(link(&feed, "next"), Some(format!("{base}/1/backward/2").as_str()));
    assert_eq!(link(&feed, "last"), Some(format!("{base}/0/forward/2").as_str()));
    // A numbered backward page is not the head.
    let (_, _, feed) = raw.get_json("/streams/s/1/backward/2").await;
    assert_eq!(feed["headOfStream"], false);
    assert_eq!(link(&feed, "previous"), Some(format!("{base}/2/forward/2").as_str()));
    // `/streams/s/{n}/{count}` is a backward read.
    let (_, _, feed) = raw.get_json("/streams/s/3/2").await;
    assert_eq!(feed["entries"][0]["title"], "3@s");
}

#[tokio::test]
async fn backward_from_0_with_count_250_returns_only_event_0() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    four_events(&raw, "s").await;
    let (_, _, feed) = raw.get_json("/streams/s/0/backward/250").await;
    let entries = feed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["title"], "0@s");
}

#[tokio::test]
async fn embed_body_gives_data_as_json_text_and_rich_members() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    let body = json!([{"eventId": uuid(1), "eventType": "Placed", "data": {"sku": "A-1", "qty": 2}, "metadata": {"c": "x"}}]);
    raw.post_batch("order-42", Some("-1"), &body).await;
    let (_, _, feed) = raw.get_json("/streams/order-42?embed=body").await;
    let e = &feed["entries"][0];
    let data: Value =
        serde_json::from_str(e["data"].as_str().expect("data is a JSON string")).unwrap();
    assert_eq!(data, json!({"sku": "A-1", "qty": 2}));
    let meta: Value = serde_json::from_str(e["metaData"].as_str().unwrap()).unwrap();
    assert_eq!(meta, json!({"c": "x"}));
    assert_eq!(e["isJson"], true);
    assert_eq!(e["isMetaData"], true);
    assert_eq!(e["eventId"], uuid(1));
    assert_eq!(e["eventType"], "Placed");
    assert_eq!(e["eventNumber"], 0);
    assert_eq!(e["streamId"], "order-42");
    assert_eq!(e["positionEventNumber"], 0);
    assert_eq!(e["positionStreamId"], "order-42");
    assert_eq!(e["summary"], "Placed");
    let id = format!("{}/streams/order-42/0", srv.url);
    assert_eq!(e["id"], id.as_str());
    assert_eq!(link(e, "edit"), Some(id.as_str()));
    assert_eq!(link(e, "alternate"), Some(id.as_str()));
    // rich: no data; none: no rich members; content: the content object.
    let (_, _, feed) = raw.get_json("/streams/order-42?embed=rich").await;
    assert!(feed["entries"][0].get("data").is_none());
    assert_eq!(feed["entries"][0]["eventType"], "Placed");
    let (_, _, feed) = raw.get_json("/streams/order-42").await;
    assert!(feed["entries"][0].get("eventType").is_none());
    let (_, _, feed) = raw.get_json("/streams/order-42?embed=content").await;
    assert_eq!(feed["entries"][0]["content"]["data"], json!({"sku": "A-1", "qty": 2}));
}

#[tokio::test]
async fn batch_data_rules_of_3_1_string_json_number_and_case_insensitive_members() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    let body = json!([
        {"EVENTID": uuid(1), "eventtype": "T", "Data": "{\"a\":1}"},
        {"eventId": uuid(2), "eventType": "T", "data": "plain text"},
        {"eventId": uuid(3), "eventType": "T", "data": 42},
    ]);
    assert_eq!(raw.post_batch("s", None, &body).await.status(), StatusCode::CREATED);
    let (_, _, feed) = raw.get_json("/streams/s/0/forward/3?embed=body").await;
    let e: Vec<&Value> = feed["entries"].as_array().unwrap().iter().rev().collect();
    assert_eq!(e[0]["isJson"], true);
    assert_eq!(
        serde_json::from_str::<Value>(e[0]["data"].as_str().unwrap()).unwrap(),
        json!({"a": 1})
    );
    assert_eq!(e[1]["isJson"], false);
    assert_eq!(e[2]["isJson"], false);
    let r = raw
        .req(Method::GET, "/streams/s/1")
        .header("Accept", "application/octet-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"plain text");
}

#[tokio::test]
async fn single_event_get_serves_data_envelope_or_entry_by_accept() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    raw.post_batch(
        "s",
        None,
        &json!([{"eventId": uuid(1), "eventType": "T", "data": {"x": 1}, "metadata": {"m": 2}}]),
    )
    .await;
    let (status, headers, data) = raw.get_json("/streams/s/0").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(data, json!({"x": 1}));
    assert_eq!(header(&headers, "cache-control").as_deref(), Some("max-age=31536000, public"));
    let (_, _, data) = raw.get_json("/streams/s/head").await;
    assert_eq!(data, json!({"x": 1}));
    let r = raw
        .req(Method::GET, "/streams/s/0")
        .header("Accept", "application/vnd.eventstore.event+json")
        .send()
        .await
        .unwrap();
    let env: Value = r.json().await.unwrap();
    assert_eq!(
        env,
        json!({"eventStreamId": "s", "eventNumber": 0, "eventType": "T", "eventId": uuid(1), "data": {"x": 1}, "metadata": {"m": 2}})
    );
    let r = raw
        .req(Method::GET, "/streams/s/0")
        .header("Accept", "application/vnd.eventstore.atom+json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(r.headers(), "content-type").as_deref(),
        Some("application/vnd.eventstore.atom+json; charset=utf-8")
    );
    let entry: Value = r.json().await.unwrap();
    assert_eq!(entry["title"], "0@s");
    assert_eq!(entry["content"]["data"], json!({"x": 1}));
    let (status, _, body) = raw.get_json("/streams/s/5").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({}));
}

#[tokio::test]
async fn missing_stream_reads_are_404() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    for path in ["/streams/nope", "/streams/nope/0/forward/20", "/streams/nope/head/backward/1"] {
        let (status, _, _) = raw.get_json(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn soft_delete_hides_the_stream_and_recreation_continues_numbering() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    four_events(&raw, "s").await;
    let r = raw.req(Method::DELETE, "/streams/s").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (status, _, _) = raw.get_json("/streams/s").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // -4 on a soft-deleted stream: 410.
    let r = raw.post_batch("s", Some("-4"), &json!([event(&uuid(20), "X", json!({}))])).await;
    assert_eq!(r.status(), StatusCode::GONE);
    let r = raw.post_batch("s", Some("-2"), &json!([event(&uuid(21), "X", json!({}))])).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(location(&r).ends_with("/streams/s/4"));
    let (status, _, feed) = raw.get_json("/streams/s/0/forward/20").await;
    assert_eq!(status, StatusCode::OK);
    let titles: Vec<_> =
        feed["entries"].as_array().unwrap().iter().map(|e| e["title"].clone()).collect();
    assert_eq!(titles, ["4@s"]);
    // Recreating with -1 also works on a soft-deleted stream.
    raw.req(Method::DELETE, "/streams/s").send().await.unwrap();
    let r = raw.post_batch("s", Some("-1"), &json!([event(&uuid(22), "X", json!({}))])).await;
    assert!(location(&r).ends_with("/streams/s/5"));
}

#[tokio::test]
async fn hard_delete_makes_reads_and_writes_410_forever() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    four_events(&raw, "s").await;
    let r =
        raw.req(Method::DELETE, "/streams/s").header("ES-HardDelete", "true").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (status, _, _) = raw.get_json("/streams/s").await;
    assert_eq!(status, StatusCode::GONE);
    let (status, _, _) = raw.get_json("/streams/s/0").await;
    assert_eq!(status, StatusCode::GONE);
    let r = raw.post_batch("s", None, &json!([event(&uuid(30), "X", json!({}))])).await;
    assert_eq!(r.status(), StatusCode::GONE);
    let r = raw.req(Method::DELETE, "/streams/s").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::GONE);
}

#[tokio::test]
async fn delete_checks_expected_version_and_never_existing_streams_per_5() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    for s in ["a", "b", "c"] {
        raw.post_batch(
            s,
            None,
            &json!([event(&uuid(1), "X", json!({})), event(&uuid(2), "X", json!({}))]),
        )
        .await;
    }
    let del = |s: &'static str, v: &'static str| {
        raw.req(Method::DELETE, &format!("/streams/{s}")).header("ES-ExpectedVersion", v).send()
    };
    assert_eq!(del("a", "-2").await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(del("b", "1").await.unwrap().status(), StatusCode::NO_CONTENT);
    let r = del("c", "2").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(r.headers(), "es-currentversion").as_deref(), Some("1"));
    // Soft delete of a stream that never existed: 400 with -1; hard delete: 204.
    let r = raw.req(Method::DELETE, "/streams/never").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(r.headers(), "es-currentversion").as_deref(), Some("-1"));
    let r = raw
        .req(Method::DELETE, "/streams/never2")
        .header("ES-HardDelete", "TRUE")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = raw
        .req(Method::DELETE, "/streams/a")
        .header("ES-HardDelete", "maybe")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn long_poll_returns_early_when_an_event_is_appended() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    four_events(&raw, "s").await;
    let poll = {
        let raw = raw.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = raw
                .req(Method::GET, "/streams/s/4/forward/20?embed=body")
                .header("Accept", "application/json")
                .header("ES-LongPoll", "30")
                .send()
                .await
                .unwrap();
            (started.elapsed(), r.json::<Value>().await.unwrap())
        })
    };
    // The poll is registered once it is waiting; an append then wakes it.
    tokio::task::yield_now().await;
    let r = raw.post_batch("s", None, &json!([event(&uuid(10), "Late", json!({}))])).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (elapsed, feed) = poll.await.unwrap();
    assert!(elapsed < std::time::Duration::from_secs(30), "returned on append, not at timeout");
    assert_eq!(feed["entries"][0]["eventType"], "Late");
}

#[tokio::test]
async fn long_poll_times_out_with_an_empty_page_or_404() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    four_events(&raw, "s").await;
    let r = raw
        .req(Method::GET, "/streams/s/4/forward/20")
        .header("Accept", "application/json")
        .header("Kurrent-LongPoll", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["entries"], json!([]));
    let r = raw
        .req(Method::GET, "/streams/missing/0/forward/20")
        .header("Accept", "application/json")
        .header("ES-LongPoll", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = raw
        .req(Method::GET, "/streams/s/4/forward/20")
        .header("Accept", "application/json")
        .header("ES-LongPoll", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn basic_auth_is_required_except_for_ping_and_info() {
    let srv = TestServer::start().await;
    let mut anon = srv.raw();
    anon.auth = false;
    let r = anon.post_batch("s", None, &json!([event(&uuid(1), "X", json!({}))])).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(header(r.headers(), "www-authenticate").unwrap().starts_with("BasicCustom"));
    let (status, _, _) = anon.get_json("/streams/s").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let r = anon
        .http
        .get(format!("{}/streams/s", srv.url))
        .basic_auth("admin", Some("wrong"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (status, _, ping) = anon.get_json("/ping").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ping["text"], "Ping request successfully handled");
    let (status, _, info) = anon.get_json("/info").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["features"]["atomPub"], true);
    assert_eq!(info["state"], "leader");
}

#[tokio::test]
async fn insecure_mode_needs_no_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start_in(dir.path(), eventlog::server::Auth::Insecure).await;
    let mut anon = srv.raw();
    anon.auth = false;
    let r = anon.post_batch("s", None, &json!([event(&uuid(1), "X", json!({}))])).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn kurrent_media_type_and_headers_are_accepted_kurrent_first() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    let r = raw
        .req(Method::POST, "/streams/k")
        .header("Content-Type", "application/vnd.kurrent.events+json; charset=utf-8")
        .header("Kurrent-ExpectedVersion", "-1")
        .header("ES-ExpectedVersion", "5")
        .body(json!([event(&uuid(1), "X", json!({}))]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "Kurrent-ExpectedVersion wins over ES-");
    let r = raw
        .req(Method::GET, "/streams/k")
        .header("Accept", "application/vnd.kurrent.atom+json")
        .header("Kurrent-RequireLeader", "True")
        .header("ES-RequireMaster", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(r.headers(), "content-type").as_deref(),
        Some("application/vnd.kurrent.atom+json; charset=utf-8")
    );
    let r = raw
        .req(Method::GET, "/streams/k")
        .header("Accept", "application/json")
        .header("ES-RequireMaster", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unsupported_or_missing_content_type_is_415_and_batches_on_incoming_too() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    let body = json!([event(&uuid(1), "X", json!({}))]).to_string();
    let r = raw
        .req(Method::POST, "/streams/s")
        .header("Content-Type", "text/plain")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = raw.req(Method::POST, "/streams/s").body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = raw
        .req(Method::POST, &format!("/streams/s/incoming/{}", uuid(5)))
        .header("Content-Type", "application/vnd.eventstore.events+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn malformed_requests_are_400_with_a_text_body() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), "Write request body invalid."),
        (json!({"not": "an array"}), "Write request body invalid."),
        (json!([{"eventType": "X", "data": {}}]), "Empty eventId provided."),
        (
            json!([{"eventId": "00000000-0000-0000-0000-000000000000", "eventType": "X"}]),
            "Empty eventId provided.",
        ),
        (json!([{"eventId": uuid(1), "data": {}}]), "Empty eventType provided."),
    ];
    for (body, message) in cases {
        let r = raw.post_batch("s", None, &body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.text().await.unwrap(), message);
    }
    let r = raw
        .req(Method::POST, "/streams/s")
        .header("Content-Type", "application/vnd.eventstore.events+json")
        .body("[{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = raw.post_batch("s", Some("-3"), &json!([event(&uuid(1), "X", json!({}))])).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.text().await.unwrap(), "ES-ExpectedVersion header in wrong format.");
    let r = raw.post_batch("s", Some("abc"), &json!([event(&uuid(1), "X", json!({}))])).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    for path in [
        "/streams/s/0/forward/0",
        "/streams/s/0/forward/x",
        "/streams/s/x/forward/2",
        "/streams/s/head/forward/2",
        "/streams/s/0/forward/4097",
    ] {
        let r =
            raw.req(Method::GET, path).header("Accept", "application/json").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
    }
}

#[tokio::test]
async fn oversized_events_are_413_and_oversized_bodies_too() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    let big = "x".repeat(eventlog::server::MAX_EVENT_BYTES + 1);
    let r = raw.post_batch("s", None, &json!([event(&uuid(1), "X", json!({"big": big}))])).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let huge = "y".repeat(eventlog::server::MAX_REQUEST_BODY_BYTES + 1);
    let r = raw
        .req(Method::POST, "/streams/s")
        .header("Content-Type", "application/vnd.eventstore.events+json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn single_event_json_post_uses_headers_and_redirects_without_an_id() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    let post = |path: &str| {
        raw.req(Method::POST, path)
            .header("Content-Type", "application/json")
            .body(r#"{"note":"leave at door"}"#)
    };
    let r = post("/streams/s")
        .header("ES-EventType", "NoteAdded")
        .header("ES-EventId", uuid(7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(location(&r).ends_with("/streams/s/0"));
    let r = post("/streams/s")
        .header("ES-EventType", "NoteAdded")
        .header("ES-EventId", uuid(7))
        .send()
        .await
        .unwrap();
    assert!(location(&r).ends_with("/streams/s/0"), "idempotent by ES-EventId");
    let r = post("/streams/s").header("ES-EventId", uuid(8)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().starts_with("Must include an event type"));
    let r = post("/streams/s").header("ES-EventType", "NoteAdded").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let to = location(&r);
    assert!(to.starts_with(&format!("{}/streams/s/incoming/", srv.url)));
    let path = to.strip_prefix(&srv.url).unwrap().to_owned();
    for _ in 0..2 {
        let r = post(&path).header("ES-EventType", "NoteAdded").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        assert!(location(&r).ends_with("/streams/s/1"));
    }
    let (_, _, data) = raw.get_json("/streams/s/1").await;
    assert_eq!(data, json!({"note": "leave at door"}));
}

#[tokio::test]
async fn feeds_without_an_acceptable_type_are_406_and_trailing_slash_redirects() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    four_events(&raw, "s").await;
    let r = raw.req(Method::GET, "/streams/s").header("Accept", "*/*").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);
    let r = raw.req(Method::GET, "/streams/s?format=json").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/streams/s/", srv.url))
        .basic_auth("admin", Some("changeit"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(location(&r), format!("{}/streams/s", srv.url));
}

#[tokio::test]
async fn stream_names_are_percent_encoded_in_links_and_dollar_all_is_reachable_both_ways() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    let r = raw.post_batch("a%40b%20c", None, &json!([event(&uuid(1), "X", json!({}))])).await;
    assert!(location(&r).ends_with("/streams/a%40b%20c/0"));
    let (_, _, feed) = raw.get_json("/streams/a@b%20c?embed=body").await;
    assert_eq!(feed["entries"][0]["streamId"], "a@b c");
    let (s1, _, f1) = raw.get_json("/streams/$all?embed=body").await;
    let (s2, _, f2) = raw.get_json("/streams/%24all?embed=body").await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(f1["entries"], f2["entries"]);
    assert_eq!(f1["title"], "All events");
}

#[tokio::test]
async fn all_forward_uses_32_hex_positions_and_previous_link_continues() {
    let srv = TestServer::start().await;
    let raw = srv.raw();
    for i in 0..5 {
        raw.post_batch(&format!("s-{i}"), None, &json!([event(&uuid(i), "X", json!({"i": i}))]))
            .await;
    }
    let (status, _, feed) =
        raw.get_json("/streams/%24all/00000000000000000000000000000000/forward/3?embed=body").await;
    assert_eq!(status, StatusCode::OK);
    let streams: Vec<_> = feed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["streamId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(streams, ["s-2", "s-1", "s-0"]);
    assert_eq!(feed["headOfStream"], false);
    let previous = link(&feed, "previous").unwrap().to_owned();
    let pos = previous.split('/').rev().nth(2).unwrap();
    assert_eq!(pos.len(), 32);
    assert!(pos.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
    let path = format!("{}?embed=body", previous.strip_prefix(&srv.url).unwrap());
    let (_, _, feed) = raw.get_json(&path).await;
    let streams: Vec<_> = feed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["streamId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(streams, ["s-4", "s-3"]);
    let r = raw
        .req(Method::GET, "/streams/%24all/XYZ/forward/3")
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (status, _, feed) = raw.get_json("/streams/%24all/head/backward/2?embed=body").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(feed["entries"][0]["streamId"], "s-4");
    assert_eq!(feed["headOfStream"], true);
}
