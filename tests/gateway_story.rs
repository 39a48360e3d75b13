//! B1–B7 through the public API only: HTTP and WebSocket on `switchboard serve
//! gateway`, customers through the signed WhatsApp webhook of `switchboard
//! serve whatsapp`, every service its own process on a real nats-server and
//! the embedded event store; time moved by the test.
#![allow(clippy::unwrap_used)]

use std::{process::Command, time::Duration};

use e2e::{Cluster, T0, eventually};
use futures_util::StreamExt;
use serde_json::{Value, json};
use testkit::{free_port, switchboard_bin};
use tokio_tungstenite::tungstenite::Message;
use whatsapp::{
    Secret,
    sandbox::{DEFAULT_SANDBOX_ACCESS_TOKEN, Sandbox, SandboxConfig},
    simulate::{self, BusinessNumber, CustomerText},
};

const JWT: &str = "e2e-jwt-secret";
const APP_SECRET: &str = "e2e-app-secret";
const BUSINESS: &str = "15550001111";

struct Story {
    cluster: Cluster,
    api: String,
    ws: String,
    webhook: String,
    http: reqwest::Client,
    _sandbox: tokio::sync::oneshot::Sender<()>,
}

fn token(sub: &str, name: &str, role: &str) -> String {
    let out = Command::new(switchboard_bin())
        .args(["token", "--sub", sub, "--name", name, "--role", role])
        .env("SWITCHBOARD_JWT_SECRET", JWT)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl Story {
    async fn start() -> Story {
        let mut cluster = Cluster::start().await;
        let (gateway_port, webhook_port) = (free_port(), free_port());
        let webhook = format!("http://127.0.0.1:{webhook_port}/webhooks/whatsapp");
        let mut sandbox = SandboxConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            DEFAULT_SANDBOX_ACCESS_TOKEN,
            APP_SECRET,
        );
        sandbox.webhook_url = Some(webhook.clone());
        let sandbox = Sandbox::bind(sandbox).await.unwrap();
        let graph = sandbox.base_url();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(sandbox.run(async move {
            let _ = stopped.await;
        }));
        for (k, v) in [
            ("SWITCHBOARD_JWT_SECRET", JWT.to_owned()),
            ("SWITCHBOARD_GATEWAY_LISTEN", format!("127.0.0.1:{gateway_port}")),
            ("SWITCHBOARD_WHATSAPP_APP_SECRET", APP_SECRET.to_owned()),
            ("SWITCHBOARD_WHATSAPP_VERIFY_TOKEN", "verify".to_owned()),
            ("SWITCHBOARD_WHATSAPP_GRAPH_URL", graph),
            ("SWITCHBOARD_WHATSAPP_LISTEN", format!("127.0.0.1:{webhook_port}")),
        ] {
            cluster.env.push((k.into(), v));
        }
        cluster.start_all().await;
        cluster.start_service("whatsapp").await;
        cluster.start_service("gateway").await;
        Story {
            cluster,
            api: format!("http://127.0.0.1:{gateway_port}/api/v1"),
            ws: format!("ws://127.0.0.1:{gateway_port}/api/v1/ws"),
            webhook,
            http: reqwest::Client::new(),
            _sandbox: stop,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.api))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn ok(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method, path, token, body).await;
        assert!((200..300).contains(&status), "{method} {path}: {status} {value}");
        value
    }

    async fn customer(&self, phone: &str, wamid: &str, text: &str) {
        let message = CustomerText {
            name: "Maria Lopez".into(),
            phone: phone.into(),
            to: BusinessNumber {
                phone_number_id: "pn-1".into(),
                display_phone_number: BUSINESS.into(),
            },
            text: text.into(),
            whatsapp_message_id: wamid.into(),
            timestamp: self.cluster.now() / 1000,
            reply_to_whatsapp_id: None,
        };
        simulate::customer_text(&self.webhook, &Secret::new(APP_SECRET), &message).await.unwrap();
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn socket(story: &Story, token: &str) -> Socket {
    let (ws, _) = tokio_tungstenite::connect_async(format!("{}?access_token={token}", story.ws))
        .await
        .unwrap();
    ws
}

/// The next frame of `kind` (others are skipped), within a bounded wait.
async fn frame(ws: &mut Socket, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no `{kind}` frame"));
        if let Some(Ok(Message::Text(text))) = next {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] == kind {
                return value;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_b8_the_story_through_http_and_websocket_only() {
    let mut story = Story::start().await;
    let sup = token("sup", "Sam Super", "supervisor");
    let alice = token("alice", "Alice Smith", "agent");
    let bob = token("bob", "Bob Jones", "agent");

    // Supervisor set-up (B3.1, B1.1, B7.2).
    story
        .ok(
            "PUT",
            "/queues/support",
            &sup,
            Some(json!({"name": "Support", "offerTimeoutSecs": 30})),
        )
        .await;
    story
        .ok("PUT", &format!("/entry-points/{BUSINESS}"), &sup, Some(json!({"queueId": "support"})))
        .await;
    for (id, name) in [("alice", "Alice Smith"), ("bob", "Bob Jones")] {
        let agent = story
            .ok("PUT", &format!("/agents/{id}"), &sup, Some(json!({"name": name, "capacity": 2})))
            .await;
        assert_eq!(agent["state"], "LoggedOut");
    }
    story
        .ok("PUT", "/wrapup-reasons/resolved", &sup, Some(json!({"label": "Issue resolved"})))
        .await;
    // B8.1: an agent may not manage queues.
    assert_eq!(story.call("PUT", "/queues/x", &alice, Some(json!({"name": "X"}))).await.0, 403);

    let mut alice_ws = socket(&story, &alice).await;
    let presence = story.ok("PUT", "/me/state", &alice, Some(json!({"state": "Available"}))).await;
    assert_eq!(presence["state"], "Available");

    // B2.1: the customer writes; Alice gets the offer, pushed and by GET.
    story.customer("15551234567", "wamid.1", "Hello, my order is late").await;
    let offer = frame(&mut alice_ws, "offer").await;
    let offers = story.ok("GET", "/me/offers", &alice, None).await;
    let o = &offers[0];
    assert_eq!(o["customerName"], "Maria Lopez");
    assert_eq!(o["customerPhone"], "+15551234567");
    assert_eq!(o["sourceNumber"], BUSINESS);
    assert_eq!(o["queueName"], "Support");
    assert!(o["offeredAt"].is_string() && o["expiresAt"].is_string());
    let conversation = o["conversationId"].as_str().unwrap().to_owned();
    assert!(offer.to_string().contains(&conversation));

    // B8.1: Bob can't accept Alice's offer nor read her conversation.
    assert_eq!(
        story.call("POST", &format!("/conversations/{conversation}/accept"), &bob, None).await.0,
        403
    );
    assert_eq!(
        story.call("GET", &format!("/conversations/{conversation}"), &bob, None).await.0,
        403
    );

    // B2.5: accept gives the whole transcript.
    story.customer("15551234567", "wamid.2", "Anyone there?").await;
    eventually("the second message in the transcript", || async {
        let c = story.call("GET", &format!("/conversations/{conversation}"), &alice, None).await.1;
        (c["messages"].as_array().map_or(0, Vec::len) == 2).then_some(())
    })
    .await;
    let accepted =
        story.ok("POST", &format!("/conversations/{conversation}/accept"), &alice, None).await;
    assert_eq!(accepted["state"], "active");
    assert_eq!(accepted["customer"]["initials"], "ML");

    // B4.2: 4097 characters are refused with the limit named; a message goes out.
    let (status, problem) = story
        .call(
            "POST",
            &format!("/conversations/{conversation}/messages"),
            &alice,
            Some(json!({"text": "x".repeat(4097)})),
        )
        .await;
    assert_eq!((status, problem["code"].as_str()), (422, Some("message_too_long")));
    let sent = story
        .ok(
            "POST",
            &format!("/conversations/{conversation}/messages"),
            &alice,
            Some(json!({"text": "Hello Maria"})),
        )
        .await;
    assert_eq!(sent["status"], "pending");
    // B4.1: the delivery statuses come back over the WebSocket.
    let status = frame(&mut alice_ws, "message_status").await;
    assert!(
        status.to_string().contains("sent") || status.to_string().contains("delivered"),
        "{status}"
    );

    // B7: End owes a wrap-up; submitting it frees the slot.
    story.ok("POST", &format!("/conversations/{conversation}/end"), &alice, None).await;
    frame(&mut alice_ws, "wrapup_required").await;
    let wrapups = story.ok("GET", "/me/wrapups", &alice, None).await;
    assert_eq!(wrapups[0]["conversationId"], conversation.as_str());
    let (status, problem) = story
        .call(
            "POST",
            &format!("/conversations/{conversation}/wrapup"),
            &alice,
            Some(json!({"reason": "nope"})),
        )
        .await;
    assert_eq!((status, problem["code"].as_str()), (422, Some("unknown_reason")));
    assert_eq!(
        story
            .call(
                "POST",
                &format!("/conversations/{conversation}/wrapup"),
                &alice,
                Some(json!({"reason": "resolved"}))
            )
            .await
            .0,
        204
    );
    frame(&mut alice_ws, "wrapup_done").await;
    let (status, problem) = story
        .call(
            "POST",
            &format!("/conversations/{conversation}/wrapup"),
            &alice,
            Some(json!({"reason": "resolved"})),
        )
        .await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("wrapup_already_submitted")));
    // B7.5: agent-presence frees the slot when it sees the submission.
    eventually("alice's slot back", || async {
        let me = story.call("GET", "/me", &alice, None).await.1;
        (me["presence"]["slotsUsed"] == 0).then_some(())
    })
    .await;

    // B2.2, B2.3: an offer not accepted in time → RONA, and the next agent gets it.
    story.ok("PUT", "/me/state", &bob, Some(json!({"state": "Available"}))).await;
    story.customer("15557654321", "wamid.9", "Hi!").await;
    let second = frame(&mut alice_ws, "offer").await;
    story.cluster.advance(Duration::from_secs(31)).await;
    frame(&mut alice_ws, "offer_withdrawn").await;
    let rona = eventually("alice in RONA", || async {
        let me = story.call("GET", "/me", &alice, None).await.1;
        (me["presence"]["state"] == "RONA" && me["presence"]["slotsUsed"] == 0).then_some(me)
    })
    .await;
    assert!(rona["offers"].as_array().unwrap().is_empty());
    let bobs = eventually("bob's offer", || async {
        let offers = story.call("GET", "/me/offers", &bob, None).await.1;
        (offers.as_array().is_some_and(|o| !o.is_empty())).then_some(offers)
    })
    .await;
    assert!(second.to_string().contains(bobs[0]["conversationId"].as_str().unwrap()));
    // A supervisor sees both agents (B1.4).
    let agents = story.ok("GET", "/agents", &sup, None).await;
    assert_eq!(agents.as_array().unwrap().len(), 2);
    assert!(story.cluster.now() > T0);
}
