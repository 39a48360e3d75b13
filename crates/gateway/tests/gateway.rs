//! The gateway over real HTTP and WebSocket, against a real `nats-server`
//! and the embedded event store started in-process.
//!
//! The read models are fed by appending events to the store directly (the
//! way the domain services write them). Where a test needs a command
//! answered, a **fake responder** subscribes to the service's commands on
//! NATS: it exists only to check the gateway's mapping of HTTP → command and
//! reply → HTTP (and read-your-writes), never the domain's rules; the
//! end-to-end tests with the real services live in `tests/` (package `e2e`).
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::{Bus, BusConfig};
use bytes::Bytes;
use eventlog::{EventStore, ExpectedVersion, HttpEventStore, HttpEventStoreConfig, NewEvent};
use futures_util::StreamExt;
use gateway::{Gateway, GatewayConfig, Role, Shared, issue_token};
use kernel::{Clock, Shutdown, ShutdownTrigger};
use prost::Message as _;
use sb_proto::v1;
use sb_proto::{
    AgentPresenceEvent, ConversationEvent, RoutingEvent, Service, WrapUpEvent,
    timestamp_from_millis,
};
use serde_json::{Value, json};
use testkit::NatsServer;
use tokio_tungstenite::tungstenite;

const SECRET: &str = "test-secret";
const T0: i64 = 1_764_000_000_000;
/// Bounded waits: generous for a loaded CI machine, never a stand-in for domain time.
const WAIT: Duration = Duration::from_secs(10);

// ---- harness ------------------------------------------------------------------------

struct Store {
    url: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start_store() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let server = eventlog::server::Server::bind(eventlog::server::ServerConfig {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        auth: eventlog::server::Auth::default(),
    })
    .await
    .unwrap();
    let url = format!("http://{}", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Store { url, _dir: dir, _stop: stop }
}

struct Env {
    base: String,
    ws_base: String,
    http: reqwest::Client,
    bus: Bus,
    log: HttpEventStore,
    clock: Clock,
    shared: Arc<Shared>,
    _trigger: ShutdownTrigger,
    _nats: NatsServer,
    _store: Store,
}

async fn spawn_gateway() -> Env {
    spawn_gateway_with(|_| {}).await
}

async fn spawn_gateway_with(configure: impl FnOnce(&mut GatewayConfig)) -> Env {
    let nats = NatsServer::start();
    let store = start_store().await;
    let bus = Bus::connect(BusConfig::new(nats.url())).await.unwrap();
    let log = HttpEventStore::new(
        HttpEventStoreConfig::new(&store.url).with_credentials("admin", "changeit"),
    )
    .unwrap();
    let clock = Clock::manual(T0);
    let mut config = GatewayConfig::new("127.0.0.1:0".parse().unwrap(), SECRET);
    configure(&mut config);
    let gateway = Gateway::bind(config, bus.clone(), log.clone(), clock.clone()).await.unwrap();
    let addr = gateway.local_addr().unwrap();
    let shared = gateway.shared();
    let (trigger, shutdown) = Shutdown::new();
    tokio::spawn(gateway.run(shutdown));
    let env = Env {
        base: format!("http://{addr}"),
        ws_base: format!("ws://{addr}"),
        http: reqwest::Client::new(),
        bus,
        log,
        clock,
        shared,
        _trigger: trigger,
        _nats: nats,
        _store: store,
    };
    eventually("the gateway is ready", || async {
        env.http.get(format!("{}/readyz", env.base)).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    env
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

fn token(sub: &str, name: &str, role: Role) -> String {
    issue_token(SECRET, sub, name, role, Duration::from_secs(3600), T0 / 1000)
}

fn alice() -> String {
    token("alice", "Alice Smith", Role::Agent)
}

fn bob() -> String {
    token("bob", "Bob Stone", Role::Agent)
}

fn sup() -> String {
    token("sam", "Sam Super", Role::Supervisor)
}

fn ts(ms: i64) -> Option<sb_proto::Timestamp> {
    Some(timestamp_from_millis(ms))
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, self.url(path));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.header("content-type", "application/json").body(b.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, value, content_type)
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let (s, v, _) = self.call("GET", path, Some(token), None).await;
        (s, v)
    }

    async fn append(&self, stream: &str, event_type: &str, data: Vec<u8>) {
        let event = NewEvent {
            event_id: uuid::Uuid::new_v4(),
            event_type: event_type.into(),
            data: data.into(),
            metadata: None,
        };
        self.log.append(stream, ExpectedVersion::Any, &[event]).await.unwrap();
    }

    async fn conv(&self, id: &str, e: impl Into<ConversationEvent>) {
        let e = e.into();
        self.append(&format!("conversation-{id}"), e.event_type(), e.to_json()).await;
    }

    async fn agent_event(&self, id: &str, e: impl Into<AgentPresenceEvent>) {
        let e = e.into();
        self.append(&format!("agent-{id}"), e.event_type(), e.to_json()).await;
    }

    async fn wrapup_event(&self, stream: &str, e: impl Into<WrapUpEvent>) {
        let e = e.into();
        self.append(stream, e.event_type(), e.to_json()).await;
    }

    async fn routing_event(&self, e: impl Into<RoutingEvent>) {
        let e = e.into();
        self.append("config-queues", e.event_type(), e.to_json()).await;
    }

    /// Waits until the gateway's read model has applied `stream` up to `version`.
    async fn applied(&self, stream: &str, version: u64) {
        eventually(&format!("{stream}@{version} is applied"), || async {
            self.shared.view().has_applied(stream, version)
        })
        .await;
    }

    async fn register(&self, id: &str, name: &str, state: v1::PresenceState) {
        self.agent_event(
            id,
            v1::AgentRegistered {
                agent_id: id.into(),
                name: name.into(),
                capacity: 2,
                skills: vec![],
                at: ts(T0),
                ..Default::default()
            },
        )
        .await;
        self.agent_event(
            id,
            v1::AgentStateChanged {
                agent_id: id.into(),
                state: state as i32,
                at: ts(T0 + 1),
                ..Default::default()
            },
        )
        .await;
    }

    /// A queued conversation with one customer message (3 events).
    async fn start_conversation(&self, id: &str) {
        self.conv(
            id,
            v1::ConversationStarted {
                conversation_id: id.into(),
                customer: Some(v1::Customer {
                    name: "Maria Lopez".into(),
                    phone: "+15551234567".into(),
                }),
                source_number: "15550001111".into(),
                phone_number_id: "pn1".into(),
                at: ts(T0),
            },
        )
        .await;
        self.conv(
            id,
            v1::ConversationQueued {
                conversation_id: id.into(),
                queue_id: "sales".into(),
                queue_name: "Sales".into(),
                queued_since: ts(T0),
                at: ts(T0),
                kind: v1::OfferKind::New as i32,
            },
        )
        .await;
        self.conv(
            id,
            v1::CustomerMessageReceived {
                conversation_id: id.into(),
                message_id: "m1".into(),
                whatsapp_message_id: format!("wamid.{id}"),
                r#type: v1::MessageType::Text as i32,
                text: "Hello".into(),
                sent_at: ts(T0),
                received_at: ts(T0),
                customer: Some(v1::Customer {
                    name: "Maria Lopez".into(),
                    phone: "+15551234567".into(),
                }),
                ..Default::default()
            },
        )
        .await;
    }

    async fn offer(&self, id: &str, offer_id: &str, agent: &str) {
        self.conv(
            id,
            v1::OfferMade {
                conversation_id: id.into(),
                offer_id: offer_id.into(),
                agent_id: agent.into(),
                kind: v1::OfferKind::New as i32,
                queue_id: "sales".into(),
                queue_name: "Sales".into(),
                offered_at: ts(T0 + 1_000),
                expires_at: ts(T0 + 31_000),
                requested_by: String::new(),
            },
        )
        .await;
    }

    async fn accepted(&self, id: &str, offer_id: &str, agent: &str, name: &str) {
        self.conv(
            id,
            v1::OfferAccepted {
                conversation_id: id.into(),
                offer_id: offer_id.into(),
                agent_id: agent.into(),
                agent_name: name.into(),
                at: ts(T0 + 2_000),
            },
        )
        .await;
    }

    async fn ws(&self, query: &str) -> Ws {
        let (socket, _) =
            tokio_tungstenite::connect_async(format!("{}/api/v1/ws?{query}", self.ws_base))
                .await
                .unwrap();
        Ws(socket)
    }
}

/// What a fake responder saw: `(verb, payload)`.
type Seen = Arc<Mutex<Vec<(String, Bytes)>>>;

/// A fake responder for `service` (mapping checks only — see the file's doc).
async fn fake_service<F>(env: &Env, service: Service, answer: F) -> Seen
where
    F: Fn(&str, &Bytes) -> v1::CommandReply + Send + Sync + 'static,
{
    let seen: Seen = Arc::default();
    let mut commands = env.bus.serve_commands(service).await.unwrap();
    env.bus.flush().await.unwrap();
    let recorded = seen.clone();
    tokio::spawn(async move {
        while let Some(command) = commands.next().await {
            recorded.lock().unwrap().push((command.verb.clone(), command.payload.clone()));
            let reply = answer(&command.verb, &command.payload);
            let _ = command.reply(Bytes::from(reply.encode_to_vec())).await;
        }
    });
    seen
}

fn refusal(code: &str, kind: v1::ErrorKind) -> v1::CommandReply {
    kernel::commands::error_reply(code, "refused by the fake service", kind)
}

struct Ws(
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
);

impl Ws {
    /// The next text frame within the bounded wait.
    async fn next_frame(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.0.next())
                .await
                .expect("a frame in time")
                .unwrap()
                .unwrap();
            if let tungstenite::Message::Text(text) = message {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    /// Frames until one of `type_` arrives.
    async fn until(&mut self, type_: &str) -> Value {
        loop {
            let frame = self.next_frame().await;
            if frame["type"] == type_ {
                return frame;
            }
        }
    }
}

fn assert_problem(
    status: u16,
    body: &Value,
    content_type: &str,
    want_status: u16,
    want_code: &str,
) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(content_type, "application/problem+json", "{body}");
    assert_eq!(body["status"], want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert!(
        body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
}

// ---- B8.1: authentication ------------------------------------------------------------

#[tokio::test]
async fn b8_1_calls_without_a_valid_token_get_401_problems() {
    let env = spawn_gateway().await;
    let (s, b, ct) = env.call("GET", "/api/v1/me", None, None).await;
    assert_problem(s, &b, &ct, 401, "token_missing");
    let expired = issue_token(
        SECRET,
        "alice",
        "Alice",
        Role::Agent,
        Duration::from_secs(60),
        T0 / 1000 - 3600,
    );
    let (s, b, ct) = env.call("GET", "/api/v1/me", Some(&expired), None).await;
    assert_problem(s, &b, &ct, 401, "token_expired");
    let forged = issue_token(
        "not-the-secret",
        "alice",
        "Alice",
        Role::Supervisor,
        Duration::from_secs(3600),
        T0 / 1000,
    );
    let (s, b, ct) = env.call("GET", "/api/v1/queues", Some(&forged), None).await;
    assert_problem(s, &b, &ct, 401, "token_invalid_signature");
    let (s, b, ct) = env.call("GET", "/api/v1/me", Some("garbage"), None).await;
    assert_problem(s, &b, &ct, 401, "token_malformed");
    // The WebSocket too, before any upgrade.
    let err =
        tokio_tungstenite::connect_async(format!("{}/api/v1/ws", env.ws_base)).await.unwrap_err();
    assert!(matches!(err, tungstenite::Error::Http(ref r) if r.status() == 401), "{err:?}");
    let err = tokio_tungstenite::connect_async(format!(
        "{}/api/v1/ws?access_token={forged}",
        env.ws_base
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, tungstenite::Error::Http(ref r) if r.status() == 401), "{err:?}");
    // The OpenAPI document needs no token.
    let (s, _, _) = env.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, 200);
}

// ---- B8.1: authorization --------------------------------------------------------------

#[tokio::test]
async fn b8_1_agents_get_403_on_supervisor_endpoints() {
    let env = spawn_gateway().await;
    let a = alice();
    let calls: [(&str, &str, Option<Value>); 7] = [
        ("PUT", "/api/v1/queues/sales", Some(json!({"name": "Sales"}))),
        ("PUT", "/api/v1/entry-points/15550001111", Some(json!({"queueId": "sales"}))),
        ("PUT", "/api/v1/agents/bob", Some(json!({"name": "Bob"}))),
        ("PUT", "/api/v1/agents/bob/state", Some(json!({"state": "Available"}))),
        ("PUT", "/api/v1/wrapup-reasons/resolved", Some(json!({"label": "Resolved"}))),
        ("DELETE", "/api/v1/wrapup-reasons/resolved", None),
        ("GET", "/api/v1/conversations", None),
    ];
    for (method, path, body) in calls {
        let (s, b, ct) = env.call(method, path, Some(&a), body).await;
        assert_problem(s, &b, &ct, 403, "supervisor_only");
    }
    let (s, b, ct) = env
        .call(
            "POST",
            "/api/v1/conversations/c1/reassign",
            Some(&a),
            Some(json!({"agentId": "bob"})),
        )
        .await;
    assert_problem(s, &b, &ct, 403, "supervisor_only");
    // The directories are open to agents (B5.1).
    for path in
        ["/api/v1/queues", "/api/v1/agents?available=true", "/api/v1/wrapup-reasons?search=res"]
    {
        assert_eq!(env.get(path, &a).await.0, 200, "{path}");
    }
}

#[tokio::test]
async fn b8_1_agent_cannot_accept_offer_made_to_someone_else() {
    let env = spawn_gateway().await;
    env.start_conversation("c1").await;
    env.offer("c1", "o1", "bob").await;
    env.applied("conversation-c1", 3).await;
    let (s, b, ct) =
        env.call("POST", "/api/v1/conversations/c1/accept", Some(&alice()), None).await;
    assert_problem(s, &b, &ct, 403, "not_offered_to_you");
    // Nor read it while it is offered to bob (B3.6 is for the offered agent only).
    let (s, b, ct) = env.call("GET", "/api/v1/conversations/c1", Some(&alice()), None).await;
    assert_problem(s, &b, &ct, 403, "not_a_participant");
    let (s, body) = env.get("/api/v1/conversations/c1", &bob()).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["state"], "offered");
    assert_eq!(body["messages"][0]["text"], "Hello");
    assert!(env.get("/api/v1/me/offers", &alice()).await.1.as_array().unwrap().is_empty());
}

#[tokio::test]
async fn b2_4_a_late_accept_by_the_offered_agent_is_the_services_conflict_not_a_403() {
    let env = spawn_gateway().await;
    let conversation = fake_service(&env, Service::Conversation, |_, _| {
        refusal("offer_expired", v1::ErrorKind::Conflict)
    })
    .await;
    env.start_conversation("c1").await;
    env.offer("c1", "o1", "alice").await;
    env.conv(
        "c1",
        v1::OfferWithdrawn {
            conversation_id: "c1".into(),
            offer_id: "o1".into(),
            agent_id: "alice".into(),
            reason: v1::WithdrawReason::Expired as i32,
            at: ts(T0 + 31_000),
        },
    )
    .await;
    env.applied("conversation-c1", 4).await;
    let (s, b, ct) =
        env.call("POST", "/api/v1/conversations/c1/accept", Some(&alice()), None).await;
    assert_problem(s, &b, &ct, 409, "offer_expired");
    assert_eq!(conversation.lock().unwrap().len(), 1);
    // Someone it was never offered to is stopped at the gateway.
    let (s, b, ct) = env.call("POST", "/api/v1/conversations/c1/accept", Some(&bob()), None).await;
    assert_problem(s, &b, &ct, 403, "not_offered_to_you");
    assert_eq!(conversation.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn b8_1_agent_cannot_read_or_act_on_another_agents_conversation() {
    let env = spawn_gateway().await;
    env.start_conversation("c1").await;
    env.offer("c1", "o1", "bob").await;
    env.accepted("c1", "o1", "bob", "Bob Stone").await;
    env.applied("conversation-c1", 4).await;
    let a = alice();
    let (s, b, ct) = env.call("GET", "/api/v1/conversations/c1", Some(&a), None).await;
    assert_problem(s, &b, &ct, 403, "not_a_participant");
    let attempts: [(&str, Option<Value>); 6] = [
        ("/messages", Some(json!({"text": "hi"}))),
        ("/transfer", Some(json!({"queueId": "sales"}))),
        ("/conference", Some(json!({"agentId": "carol"}))),
        ("/conference/end", None),
        ("/leave", None),
        ("/end", None),
    ];
    for (suffix, body) in attempts {
        let (s, b, ct) =
            env.call("POST", &format!("/api/v1/conversations/c1{suffix}"), Some(&a), body).await;
        assert_problem(s, &b, &ct, 403, "not_a_participant");
    }
    // Unknown conversations are 404, whoever asks.
    let (s, b, ct) = env.call("GET", "/api/v1/conversations/nope", Some(&sup()), None).await;
    assert_problem(s, &b, &ct, 404, "conversation_not_found");
    // Supervisors see everything.
    let (s, body) = env.get("/api/v1/conversations/c1", &sup()).await;
    assert_eq!((s, &body["owner"]), (200, &json!("bob")));
}

#[tokio::test]
async fn b8_1_an_agent_still_reads_a_conversation_it_left_but_cannot_act_on_it() {
    let env = spawn_gateway().await;
    env.start_conversation("c1").await;
    env.offer("c1", "o1", "bob").await;
    env.accepted("c1", "o1", "bob", "Bob Stone").await;
    env.conv(
        "c1",
        v1::ConversationEnded {
            conversation_id: "c1".into(),
            by: None,
            agent_ids: vec!["bob".into()],
            at: ts(T0 + 60_000),
        },
    )
    .await;
    env.applied("conversation-c1", 5).await;
    // Read-only, e.g. while writing the wrap-up.
    let (s, body) = env.get("/api/v1/conversations/c1", &bob()).await;
    assert_eq!((s, &body["state"]), (200, &json!("ended")), "{body}");
    let (s, b, ct) = env
        .call(
            "POST",
            "/api/v1/conversations/c1/messages",
            Some(&bob()),
            Some(json!({"text": "hi"})),
        )
        .await;
    assert_problem(s, &b, &ct, 403, "not_a_participant");
    // Someone who never took part still may not read it.
    let (s, b, ct) = env.call("GET", "/api/v1/conversations/c1", Some(&alice()), None).await;
    assert_problem(s, &b, &ct, 403, "not_a_participant");
}

// ---- reads ---------------------------------------------------------------------------

#[tokio::test]
async fn b1_b2_b3_b7_read_models_reflect_appended_events() {
    let env = spawn_gateway().await;
    env.routing_event(v1::QueueDefined {
        queue_id: "sales".into(),
        name: "Sales".into(),
        offer_timeout_secs: 30,
        priority: 1,
        ..Default::default()
    })
    .await;
    env.routing_event(v1::QueueDefined {
        queue_id: "vip".into(),
        name: "VIP Support".into(),
        offer_timeout_secs: 20,
        priority: 5,
        ..Default::default()
    })
    .await;
    env.register("alice", "Alice Smith", v1::PresenceState::Available).await;
    env.register("bob", "Bob Stone", v1::PresenceState::Idle).await;
    env.wrapup_event(
        "config-wrapup-reasons",
        v1::WrapupReasonAdded {
            code: "resolved".into(),
            label: "Issue resolved".into(),
            ..Default::default()
        },
    )
    .await;
    env.wrapup_event(
        "config-wrapup-reasons",
        v1::WrapupReasonAdded { code: "spam".into(), label: "Spam".into(), ..Default::default() },
    )
    .await;
    env.wrapup_event(
        "config-wrapup-reasons",
        v1::WrapupReasonRetired { code: "spam".into(), ..Default::default() },
    )
    .await;
    env.wrapup_event(
        "wrapup-alice",
        v1::WrapupOwed {
            wrapup_id: "w1".into(),
            agent_id: "alice".into(),
            conversation_id: "old".into(),
            since: ts(T0),
            auto_at: ts(T0 + 120_000),
            ..Default::default()
        },
    )
    .await;
    env.start_conversation("c1").await;
    env.start_conversation("c2").await;
    env.offer("c2", "o2", "alice").await;
    env.applied("conversation-c2", 3).await;
    env.applied("wrapup-alice", 0).await;

    let (s, queues) = env.get("/api/v1/queues", &alice()).await;
    assert_eq!(s, 200);
    assert_eq!(queues[0]["id"], "vip", "by priority: {queues}");
    assert_eq!(queues[1]["waiting"], 1, "c1 waits in sales, c2 is offered: {queues}");
    assert_eq!(queues[1]["offerTimeoutSecs"], 30);
    let (_, found) = env.get("/api/v1/queues?search=SUPP", &alice()).await;
    assert_eq!(found.as_array().unwrap().len(), 1);

    let (_, agents) = env.get("/api/v1/agents", &sup()).await;
    assert_eq!(agents.as_array().unwrap().len(), 2);
    assert_eq!(agents[0]["id"], "alice");
    assert_eq!(agents[0]["capacity"], 2);
    assert!(agents[0]["stateSince"].as_str().unwrap().ends_with('Z'));
    let (_, available) = env.get("/api/v1/agents?available=true&search=ali", &bob()).await;
    assert_eq!(available.as_array().unwrap().len(), 1);
    let (s, b, ct) = env.call("GET", "/api/v1/agents?available=maybe", Some(&bob()), None).await;
    assert_problem(s, &b, &ct, 400, "invalid_query");

    let (_, reasons) = env.get("/api/v1/wrapup-reasons", &alice()).await;
    assert_eq!(reasons, json!([{"code": "resolved", "label": "Issue resolved"}]));

    let (_, me) = env.get("/api/v1/me", &alice()).await;
    assert_eq!(me["agent"], json!({"id": "alice", "name": "Alice Smith", "role": "agent"}));
    assert_eq!(me["presence"]["state"], "Available");
    assert_eq!(me["offers"][0]["conversationId"], "c2");
    assert_eq!(me["offers"][0]["customerPhone"], "+15551234567");
    assert_eq!(me["offers"][0]["queueName"], "Sales");
    assert_eq!(me["pendingWrapups"][0]["conversationId"], "old");
    assert_eq!(
        env.get("/api/v1/me/wrapups", &alice()).await.1[0]["autoAt"],
        "2025-11-24T16:02:00.000Z"
    );
    assert_eq!(env.get("/api/v1/me/offers", &alice()).await.1[0]["kind"], "new");

    let (_, queued) = env.get("/api/v1/conversations?state=queued", &sup()).await;
    assert_eq!(queued.as_array().unwrap().len(), 1);
    assert!(queued[0].get("messages").is_none(), "lists carry no messages");
    let (s, b, ct) =
        env.call("GET", "/api/v1/conversations?state=sleeping", Some(&sup()), None).await;
    assert_problem(s, &b, &ct, 400, "invalid_state");
    // B3.6: the offered agent reads the transcript while the offer is live.
    let (s, c2) = env.get("/api/v1/conversations/c2", &alice()).await;
    assert_eq!(s, 200);
    assert_eq!(c2["customer"]["initials"], "ML");
    assert_eq!(c2["windowClosesAt"], "2025-11-25T16:00:00.000Z");
}

// ---- commands (fake responders: mapping only) -------------------------------------------

#[tokio::test]
async fn b2_4_accept_sends_accept_offer_and_answers_after_the_read_model_shows_it() {
    let env = spawn_gateway().await;
    env.start_conversation("c1").await;
    env.offer("c1", "o1", "alice").await;
    env.applied("conversation-c1", 3).await;
    // The fake service appends OfferAccepted like the real one, then replies
    // with the stream version: the gateway must not answer before it shows.
    let log = env.log.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Bytes)>();
    let mut commands = env.bus.serve_commands(Service::Conversation).await.unwrap();
    env.bus.flush().await.unwrap();
    tokio::spawn(async move {
        while let Some(command) = commands.next().await {
            let _ = tx.send((command.verb.clone(), command.payload.clone()));
            let accept = v1::AcceptOffer::decode(command.payload.clone()).unwrap();
            let event = ConversationEvent::from(v1::OfferAccepted {
                conversation_id: accept.conversation_id.clone(),
                offer_id: "o1".into(),
                agent_id: accept.agent_id.clone(),
                agent_name: accept.agent_name.clone(),
                at: ts(T0 + 2_000),
            });
            let new = NewEvent {
                event_id: uuid::Uuid::new_v4(),
                event_type: event.event_type().into(),
                data: event.to_json().into(),
                metadata: None,
            };
            log.append("conversation-c1", ExpectedVersion::Exact(3), &[new]).await.unwrap();
            let summary = v1::ConversationSummary {
                conversation_id: "c1".into(),
                state: "active".into(),
                owner: accept.agent_id,
                ..Default::default()
            };
            let reply = kernel::commands::ok_at(
                "ConversationSummary",
                &summary,
                "conversation-c1",
                Some(4),
            );
            let _ = command.reply(Bytes::from(reply.encode_to_vec())).await;
        }
    });
    let (s, body, _) =
        env.call("POST", "/api/v1/conversations/c1/accept", Some(&alice()), None).await;
    assert_eq!(s, 200, "{body}");
    let (verb, payload) = rx.recv().await.unwrap();
    assert_eq!(verb, "accept");
    assert_eq!(
        v1::AcceptOffer::decode(payload).unwrap(),
        v1::AcceptOffer {
            conversation_id: "c1".into(),
            agent_id: "alice".into(),
            agent_name: "Alice Smith".into()
        }
    );
    // Read-your-writes: the answer already shows the accept, with the transcript (B2.5).
    assert_eq!(body["state"], "active");
    assert_eq!(body["participants"][0]["agentId"], "alice");
    assert_eq!(body["participants"][0]["initials"], "AS");
    assert_eq!(body["messages"][0]["sender"]["initials"], "ML");
    assert!(env.get("/api/v1/me/offers", &alice()).await.1.as_array().unwrap().is_empty());
}

#[tokio::test]
async fn b8_commands_map_fields_and_refusals_map_to_problems() {
    let env = spawn_gateway().await;
    env.start_conversation("c1").await;
    env.offer("c1", "o1", "alice").await;
    env.accepted("c1", "o1", "alice", "Alice Smith").await;
    env.applied("conversation-c1", 4).await;
    let conversation = fake_service(&env, Service::Conversation, |verb, payload| match verb {
        "send" => {
            let send = v1::SendAgentMessage::decode(payload.clone()).unwrap();
            if send.text.chars().count() > 4096 {
                return refusal("message_too_long", v1::ErrorKind::Rule);
            }
            let stored = v1::AgentMessageStored {
                conversation_id: send.conversation_id,
                message_id: send.message_id,
                at: ts(T0 + 9_000),
            };
            kernel::commands::ok("AgentMessageStored", &stored)
        }
        "transfer" => refusal("agent_not_available", v1::ErrorKind::Rule),
        "end" => refusal("not_owner", v1::ErrorKind::Forbidden),
        "leave" => refusal("owner_cannot_leave", v1::ErrorKind::Conflict),
        _ => refusal("conversation_not_found", v1::ErrorKind::NotFound),
    })
    .await;
    let presence = fake_service(&env, Service::AgentPresence, |_, payload| {
        let change = v1::ChangeAgentState::decode(payload.clone()).unwrap();
        let state = v1::AgentPresence {
            agent_id: change.agent_id,
            name: "Alice Smith".into(),
            capacity: 3,
            state: change.state,
            idle_reason: change.idle_reason,
            state_since: ts(T0 + 5_000),
            slots_used: 1,
            ..Default::default()
        };
        kernel::commands::ok("AgentPresence", &state)
    })
    .await;
    let a = alice();

    // POST messages → SendAgentMessage; 201 Message pending.
    let (s, m, _) = env
        .call(
            "POST",
            "/api/v1/conversations/c1/messages",
            Some(&a),
            Some(json!({"text": "Hola Maria"})),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(
        (m["status"].as_str(), m["direction"].as_str()),
        (Some("pending"), Some("outbound"))
    );
    assert_eq!(
        m["sender"],
        json!({"kind": "agent", "id": "alice", "name": "Alice Smith", "initials": "AS"})
    );
    assert_eq!(m["at"], "2025-11-24T16:00:09.000Z");
    let (verb, payload) = conversation.lock().unwrap()[0].clone();
    let send = v1::SendAgentMessage::decode(payload).unwrap();
    assert_eq!(
        (verb.as_str(), send.text.as_str(), send.agent_id.as_str()),
        ("send", "Hola Maria", "alice")
    );
    assert_eq!(m["id"], send.message_id.as_str(), "the gateway chose the message id");
    let long = "x".repeat(4097);
    let (s, b, ct) = env
        .call("POST", "/api/v1/conversations/c1/messages", Some(&a), Some(json!({"text": long})))
        .await;
    assert_problem(s, &b, &ct, 422, "message_too_long");

    // Refusals keep the service's code; the kind picks the status.
    let (s, b, ct) = env
        .call(
            "POST",
            "/api/v1/conversations/c1/transfer",
            Some(&a),
            Some(json!({"agentId": "bob"})),
        )
        .await;
    assert_problem(s, &b, &ct, 422, "agent_not_available");
    let transfer =
        v1::TransferConversation::decode(conversation.lock().unwrap().last().unwrap().1.clone())
            .unwrap();
    assert_eq!(
        transfer,
        v1::TransferConversation {
            conversation_id: "c1".into(),
            agent_id: "alice".into(),
            to_queue_id: String::new(),
            to_agent_id: "bob".into()
        }
    );
    let (s, b, ct) = env.call("POST", "/api/v1/conversations/c1/end", Some(&a), None).await;
    assert_problem(s, &b, &ct, 403, "not_owner");
    let end = v1::EndConversation::decode(conversation.lock().unwrap().last().unwrap().1.clone())
        .unwrap();
    assert_eq!(end.by, Some(v1::Actor { kind: v1::ActorKind::Agent as i32, id: "alice".into() }));
    let (s, b, ct) = env.call("POST", "/api/v1/conversations/c1/leave", Some(&a), None).await;
    assert_problem(s, &b, &ct, 409, "owner_cannot_leave");
    let (s, b, ct) =
        env.call("POST", "/api/v1/conversations/c1/conference/end", Some(&a), None).await;
    assert_problem(s, &b, &ct, 404, "conversation_not_found");
    assert_eq!(conversation.lock().unwrap().last().unwrap().0, "end-conference");

    // PUT /me/state → ChangeAgentState by the agent itself.
    let (s, p, _) = env
        .call(
            "PUT",
            "/api/v1/me/state",
            Some(&a),
            Some(json!({"state": "Idle", "reason": "lunch"})),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(
        p,
        json!({"state": "Idle", "idleReason": "lunch", "stateSince": "2025-11-24T16:00:05.000Z", "slotsUsed": 1, "capacity": 3})
    );
    let (verb, payload) = presence.lock().unwrap()[0].clone();
    assert_eq!(verb, "change-state");
    assert_eq!(
        v1::ChangeAgentState::decode(payload).unwrap(),
        v1::ChangeAgentState {
            agent_id: "alice".into(),
            state: v1::PresenceState::Idle as i32,
            idle_reason: "lunch".into(),
            by: Some(v1::Actor { kind: v1::ActorKind::Agent as i32, id: "alice".into() }),
        }
    );
    // A supervisor changing someone else's state is recorded as the supervisor (B1.4).
    let (s, _, _) = env
        .call("PUT", "/api/v1/agents/bob/state", Some(&sup()), Some(json!({"state": "Available"})))
        .await;
    assert_eq!(s, 200);
    let change = v1::ChangeAgentState::decode(presence.lock().unwrap()[1].1.clone()).unwrap();
    assert_eq!(
        (change.agent_id.as_str(), change.by.unwrap().kind),
        ("bob", v1::ActorKind::Supervisor as i32)
    );
}

#[tokio::test]
async fn b8_malformed_requests_get_400_problems_and_change_nothing() {
    let env = spawn_gateway().await;
    let conversation = fake_service(&env, Service::Conversation, |_, _| {
        refusal("unexpected", v1::ErrorKind::Conflict)
    })
    .await;
    let presence = fake_service(&env, Service::AgentPresence, |_, _| {
        refusal("unexpected", v1::ErrorKind::Conflict)
    })
    .await;
    env.start_conversation("c1").await;
    env.offer("c1", "o1", "alice").await;
    env.accepted("c1", "o1", "alice", "Alice Smith").await;
    env.applied("conversation-c1", 4).await;
    let a = alice();
    let request = env
        .http
        .put(env.url("/api/v1/me/state"))
        .bearer_auth(&a)
        .header("content-type", "application/json")
        .body("{\"state\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(request.status(), 400);
    assert_eq!(request.json::<Value>().await.unwrap()["code"], "malformed_json");
    let cases: [(&str, &str, Value, &str); 7] = [
        ("PUT", "/api/v1/me/state", json!({"state": "Sleeping"}), "invalid_state"),
        ("PUT", "/api/v1/me/state", json!({"state": "RONA"}), "invalid_state"),
        ("PUT", "/api/v1/me/state", json!({"status": "Available"}), "invalid_body"),
        (
            "POST",
            "/api/v1/conversations/c1/transfer",
            json!({"queueId": "q", "agentId": "bob"}),
            "invalid_target",
        ),
        ("POST", "/api/v1/conversations/c1/conference", json!({}), "invalid_target"),
        ("POST", "/api/v1/conversations/c1/messages", json!({"text": 5}), "invalid_body"),
        ("POST", "/api/v1/conversations/bad%20id/messages", json!({"text": "hi"}), "invalid_id"),
    ];
    for (method, path, body, code) in cases {
        let (s, b, ct) = env.call(method, path, Some(&a), Some(body)).await;
        assert_problem(s, &b, &ct, 400, code);
    }
    let (s, b, ct) = env
        .call("PUT", "/api/v1/entry-points/15-55", Some(&sup()), Some(json!({"queueId": "sales"})))
        .await;
    assert_problem(s, &b, &ct, 400, "invalid_business_number");
    let (s, b, ct) = env.call("GET", "/api/v1/nothing-here", Some(&a), None).await;
    assert_problem(s, &b, &ct, 404, "no_such_endpoint");
    let (s, b, ct) = env.call("PATCH", "/api/v1/me", Some(&a), None).await;
    assert_problem(s, &b, &ct, 405, "method_not_allowed");
    let big = "x".repeat(gateway::MAX_BODY_BYTES + 1);
    let (s, b, ct) = env
        .call("POST", "/api/v1/conversations/c1/messages", Some(&a), Some(json!({"text": big})))
        .await;
    assert_problem(s, &b, &ct, 413, "body_too_large");
    assert!(
        conversation.lock().unwrap().is_empty() && presence.lock().unwrap().is_empty(),
        "nothing reached a service"
    );
}

#[tokio::test]
async fn b8_a_service_that_does_not_answer_gives_503() {
    let env = spawn_gateway().await;
    let (s, b, ct) =
        env.call("PUT", "/api/v1/queues/sales", Some(&sup()), Some(json!({"name": "Sales"}))).await;
    assert_problem(s, &b, &ct, 503, "service_unavailable");
    env.start_conversation("c1").await;
    env.applied("conversation-c1", 2).await;
    let (s, b, ct) = env
        .call(
            "POST",
            "/api/v1/conversations/c1/reassign",
            Some(&sup()),
            Some(json!({"agentId": "bob"})),
        )
        .await;
    assert_problem(s, &b, &ct, 503, "service_unavailable");
}

#[tokio::test]
async fn b8_calls_beyond_the_in_flight_bound_are_shed_with_503() {
    let env = spawn_gateway_with(|c| c.max_in_flight = 1).await;
    // A presence service that takes its time (a fake: only the bound is under test).
    let mut commands = env.bus.serve_commands(Service::AgentPresence).await.unwrap();
    env.bus.flush().await.unwrap();
    tokio::spawn(async move {
        while let Some(command) = commands.next().await {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let reply = kernel::commands::ok("AgentPresence", &v1::AgentPresence::default());
            let _ = command.reply(Bytes::from(reply.encode_to_vec())).await;
        }
    });
    let a = alice();
    let slow = env.call("PUT", "/api/v1/me/state", Some(&a), Some(json!({"state": "Available"})));
    let shed = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        env.call("GET", "/api/v1/me", Some(&bob()), None).await
    };
    let ((slow_status, _, _), (s, b, ct)) = tokio::join!(slow, shed);
    assert_eq!(slow_status, 200);
    assert_problem(s, &b, &ct, 503, "overloaded");
    assert_eq!(env.get("/api/v1/me", &bob()).await.0, 200, "free again");
}

#[tokio::test]
async fn b3_supervisor_puts_map_to_routing_presence_and_wrapup_commands() {
    let env = spawn_gateway().await;
    let routing = fake_service(&env, Service::Routing, |verb, payload| match verb {
        "put-queue" => {
            let q = v1::PutQueue::decode(payload.clone()).unwrap();
            let queue = v1::Queue {
                queue_id: q.queue_id,
                name: q.name,
                offer_timeout_secs: q.offer_timeout_secs,
                priority: q.priority,
                skills: q.skills,
                waiting: 0,
            };
            kernel::commands::ok("Queue", &queue)
        }
        _ => {
            let e = v1::PutEntryPoint::decode(payload.clone()).unwrap();
            kernel::commands::ok(
                "EntryPoint",
                &v1::EntryPoint { business_number: e.business_number, queue_id: e.queue_id },
            )
        }
    })
    .await;
    let presence = fake_service(&env, Service::AgentPresence, |_, payload| {
        let r = v1::RegisterAgent::decode(payload.clone()).unwrap();
        kernel::commands::ok(
            "AgentPresence",
            &v1::AgentPresence {
                agent_id: r.agent_id,
                name: r.name,
                capacity: r.capacity,
                skills: r.skills,
                state: v1::PresenceState::LoggedOut as i32,
                ..Default::default()
            },
        )
    })
    .await;
    let wrapup = fake_service(&env, Service::WrapUp, |verb, payload| match verb {
        "put-reason" => {
            let r = v1::PutWrapupReason::decode(payload.clone()).unwrap();
            kernel::commands::ok(
                "WrapupReason",
                &v1::WrapupReason { code: r.code, label: r.label, retired: false },
            )
        }
        "retire-reason" => kernel::commands::ok("WrapupReason", &v1::WrapupReason::default()),
        _ => refusal("unknown_reason", v1::ErrorKind::Rule),
    })
    .await;
    let s_ = sup();
    let (s, q, _) = env
        .call(
            "PUT",
            "/api/v1/queues/sales",
            Some(&s_),
            Some(json!({"name": "Sales", "skills": ["es"]})),
        )
        .await;
    assert_eq!(s, 200, "{q}");
    assert_eq!(
        q,
        json!({"id": "sales", "name": "Sales", "offerTimeoutSecs": 30, "priority": 0, "skills": ["es"], "waiting": 0})
    );
    let put = v1::PutQueue::decode(routing.lock().unwrap()[0].1.clone()).unwrap();
    assert_eq!(
        put.by,
        Some(v1::Actor { kind: v1::ActorKind::Supervisor as i32, id: "sam".into() })
    );
    let (s, e, _) = env
        .call(
            "PUT",
            "/api/v1/entry-points/+15550001111",
            Some(&s_),
            Some(json!({"queueId": "sales"})),
        )
        .await;
    assert_eq!((s, e), (200, json!({"businessNumber": "15550001111", "queueId": "sales"})));
    assert_eq!(routing.lock().unwrap()[1].0, "put-entry-point");
    let (s, a, _) = env
        .call("PUT", "/api/v1/agents/carol", Some(&s_), Some(json!({"name": "Carol King"})))
        .await;
    assert_eq!(s, 200);
    assert_eq!((a["state"].as_str(), a["capacity"].as_u64()), (Some("LoggedOut"), Some(3)));
    assert_eq!(presence.lock().unwrap()[0].0, "register");
    let (s, r, _) = env
        .call(
            "PUT",
            "/api/v1/wrapup-reasons/resolved",
            Some(&s_),
            Some(json!({"label": "Issue resolved"})),
        )
        .await;
    assert_eq!((s, r), (200, json!({"code": "resolved", "label": "Issue resolved"})));
    let (s, _, _) = env.call("DELETE", "/api/v1/wrapup-reasons/resolved", Some(&s_), None).await;
    assert_eq!(s, 204);
    // POST wrapup → SubmitWrapup for the caller.
    let (s, b, ct) = env
        .call(
            "POST",
            "/api/v1/conversations/c9/wrapup",
            Some(&alice()),
            Some(json!({"reason": "nope", "note": "n"})),
        )
        .await;
    assert_problem(s, &b, &ct, 422, "unknown_reason");
    let verbs: Vec<String> = wrapup.lock().unwrap().iter().map(|(v, _)| v.clone()).collect();
    assert_eq!(verbs, ["put-reason", "retire-reason", "submit"]);
    let submit = v1::SubmitWrapup::decode(wrapup.lock().unwrap()[2].1.clone()).unwrap();
    assert_eq!(
        submit,
        v1::SubmitWrapup {
            agent_id: "alice".into(),
            conversation_id: "c9".into(),
            reason_code: "nope".into(),
            note: "n".into()
        }
    );
}

// ---- WebSocket -------------------------------------------------------------------------

#[tokio::test]
async fn b2_1_the_websocket_pushes_an_offer_within_a_bounded_wait_and_since_replays() {
    let env = spawn_gateway().await;
    env.register("alice", "Alice Smith", v1::PresenceState::Available).await;
    env.start_conversation("c1").await;
    env.applied("conversation-c1", 2).await;
    let mut ws = env.ws(&format!("access_token={}", alice())).await;
    let hello = ws.next_frame().await;
    assert_eq!(hello["type"], "hello");
    let started = std::time::Instant::now();
    env.offer("c1", "o1", "alice").await;
    let offer = ws.until("offer").await;
    println!("offer frame after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(offer["offer"]["customerName"], "Maria Lopez");
    assert_eq!(offer["offer"]["offeredAt"], "2025-11-24T16:00:01.000Z");
    let position = offer["position"].as_u64().unwrap();
    assert!(offer["at"].as_str().unwrap().ends_with('Z'));
    // Bob never hears of alice's offer; a supervisor does.
    let mut sup_ws = env.ws(&format!("access_token={}&since={}", sup(), position - 1)).await;
    assert_eq!(sup_ws.next_frame().await["type"], "hello");
    assert_eq!(sup_ws.next_frame().await["type"], "offer");
    drop(ws);

    // Alice reconnects with `since` and gets what she missed.
    env.accepted("c1", "o1", "alice", "Alice Smith").await;
    env.conv(
        "c1",
        v1::AgentMessageAdded {
            conversation_id: "c1".into(),
            message_id: "a1".into(),
            agent_id: "alice".into(),
            agent_name: "Alice Smith".into(),
            text: "Hi".into(),
            at: ts(T0 + 3_000),
        },
    )
    .await;
    env.applied("conversation-c1", 5).await;
    let mut ws = env.ws(&format!("access_token={}&since={position}", alice())).await;
    assert_eq!(ws.next_frame().await["type"], "hello");
    let mut missed = Vec::new();
    for _ in 0..4 {
        missed.push(ws.next_frame().await);
    }
    let types: Vec<&str> = missed.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["conversation", "offer_withdrawn", "conversation", "message"], "{missed:?}");
    assert!(missed.windows(2).all(|w| w[0]["position"].as_u64() < w[1]["position"].as_u64()));
    assert_eq!(missed[3]["message"]["status"], "pending");
    // And live frames keep coming on the same socket.
    env.conv(
        "c1",
        v1::MessageStatusChanged {
            conversation_id: "c1".into(),
            message_id: "a1".into(),
            status: v1::DeliveryStatus::Delivered as i32,
            at: ts(T0 + 4_000),
            ..Default::default()
        },
    )
    .await;
    let status = ws.until("message_status").await;
    assert_eq!(
        (status["messageId"].as_str(), status["status"].as_str()),
        (Some("a1"), Some("delivered"))
    );
    // Presence frames go to the agent (via the Authorization header this time).
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "{}/api/v1/ws",
        env.ws_base
    ))
    .unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {}", alice()).parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut header_ws = Ws(socket);
    assert_eq!(header_ws.next_frame().await["type"], "hello");
    env.agent_event(
        "alice",
        v1::AgentStateChanged {
            agent_id: "alice".into(),
            state: v1::PresenceState::Idle as i32,
            idle_reason: "break".into(),
            at: ts(T0 + 9_000),
            ..Default::default()
        },
    )
    .await;
    let presence = header_ws.until("presence").await;
    assert_eq!(presence["agent"]["idleReason"], "break");
}

#[tokio::test]
async fn b8_a_since_older_than_the_ring_asks_the_client_to_resync() {
    let env = spawn_gateway_with(|c| c.ws_ring_frames = 4).await;
    env.start_conversation("c1").await;
    env.start_conversation("c2").await;
    env.applied("conversation-c2", 2).await;
    let mut ws = env.ws(&format!("access_token={}&since=1", sup())).await;
    assert_eq!(ws.next_frame().await["type"], "hello");
    let resync = ws.next_frame().await;
    assert_eq!(resync["type"], "resync");
    assert_eq!(resync["position"], 6);
    let (s, b, ct) =
        env.call("GET", &format!("/api/v1/ws?access_token={}&since=abc", sup()), None, None).await;
    assert_problem(s, &b, &ct, 400, "invalid_since");
}

#[tokio::test]
async fn b8_1_a_websocket_is_closed_when_its_token_expires() {
    let env = spawn_gateway().await;
    let short = issue_token(
        SECRET,
        "alice",
        "Alice Smith",
        Role::Agent,
        Duration::from_secs(30),
        T0 / 1000,
    );
    let mut ws = env.ws(&format!("access_token={short}")).await;
    assert_eq!(ws.next_frame().await["type"], "hello");
    env.clock.advance(Duration::from_secs(31));
    let message = tokio::time::timeout(WAIT, ws.0.next()).await.unwrap().unwrap().unwrap();
    match message {
        tungstenite::Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), gateway::ws::CLOSE_TOKEN_EXPIRED)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn b8_websockets_beyond_the_configured_bound_are_refused() {
    let env = spawn_gateway_with(|c| c.max_ws_clients = 1).await;
    let mut first = env.ws(&format!("access_token={}", alice())).await;
    assert_eq!(first.next_frame().await["type"], "hello");
    let err = tokio_tungstenite::connect_async(format!(
        "{}/api/v1/ws?access_token={}",
        env.ws_base,
        bob()
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, tungstenite::Error::Http(ref r) if r.status() == 503), "{err:?}");
    drop(first);
    eventually("the first socket is gone", || async { env.shared.hub.is_empty() }).await;
    let mut second = env.ws(&format!("access_token={}", bob())).await;
    assert_eq!(second.next_frame().await["type"], "hello");
}

#[tokio::test]
async fn b8_a_slow_websocket_client_is_cut_off_instead_of_growing_memory() {
    let env = spawn_gateway_with(|c| {
        c.ws_client_buffer = 8;
        c.ws_send_timeout = Duration::from_millis(500);
    })
    .await;
    env.start_conversation("c1").await;
    env.applied("conversation-c1", 2).await;
    // A supervisor that never reads: frames of 64 KiB pile up in its queue and socket.
    let mut slow = env.ws(&format!("access_token={}", sup())).await;
    let text = "x".repeat(64 * 1024);
    let total = 200u64;
    for i in 0..total {
        env.conv(
            "c1",
            v1::CustomerMessageReceived {
                conversation_id: "c1".into(),
                message_id: format!("bulk{i}"),
                whatsapp_message_id: format!("wamid.bulk{i}"),
                r#type: v1::MessageType::Text as i32,
                text: text.clone(),
                sent_at: ts(T0),
                received_at: ts(T0),
                ..Default::default()
            },
        )
        .await;
    }
    env.applied("conversation-c1", 2 + total).await;
    eventually("the slow client is cut off", || async {
        env.shared.stats.ws_clients_too_slow.load(std::sync::atomic::Ordering::Relaxed) >= 1
    })
    .await;
    eventually("the hub forgot it", || async { env.shared.hub.is_empty() }).await;
    // Reading now: some frames, then the end (a 4008 close when it got through), never all of them.
    let mut frames = 0u64;
    let mut close_code = None;
    while let Ok(Some(message)) = tokio::time::timeout(WAIT, slow.0.next()).await {
        match message {
            Ok(tungstenite::Message::Text(_)) => frames += 1,
            Ok(tungstenite::Message::Close(frame)) => {
                close_code = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(frames < total, "got {frames} of {total} frames: the client was not cut off");
    assert!(close_code.is_none_or(|c| c == gateway::ws::CLOSE_TOO_SLOW), "{close_code:?}");
    // A well-behaved client still gets frames.
    let mut ok = env.ws(&format!("access_token={}", sup())).await;
    assert_eq!(ok.next_frame().await["type"], "hello");
    env.offer("c1", "o1", "alice").await;
    assert_eq!(ok.until("offer").await["offer"]["offerId"], "o1");
    let _ = slow.0.close(None).await;
}

// ---- B1.5 lost sessions -------------------------------------------------------------------

#[tokio::test]
async fn b1_5_an_agent_without_a_session_goes_idle_disconnected_and_its_offers_are_withdrawn() {
    let env = spawn_gateway_with(|c| c.session_timeout = Duration::from_secs(60)).await;
    let conversation = fake_service(&env, Service::Conversation, |_, _| {
        kernel::commands::ok("ConversationSummary", &v1::ConversationSummary::default())
    })
    .await;
    let presence = fake_service(&env, Service::AgentPresence, |_, _| {
        kernel::commands::ok("AgentPresence", &v1::AgentPresence::default())
    })
    .await;
    env.register("alice", "Alice Smith", v1::PresenceState::Available).await;
    env.register("bob", "Bob Stone", v1::PresenceState::Available).await;
    env.register("carol", "Carol King", v1::PresenceState::LoggedOut).await;
    env.register("dave", "Dave Rona", v1::PresenceState::Rona).await;
    env.start_conversation("c1").await;
    env.offer("c1", "o1", "alice").await;
    env.applied("conversation-c1", 3).await;
    env.applied("agent-carol", 1).await;
    env.applied("agent-dave", 1).await;
    // Bob keeps a WebSocket open; alice only made a call at the start.
    let mut bob_ws = env.ws(&format!("access_token={}", bob())).await;
    assert_eq!(bob_ws.next_frame().await["type"], "hello");
    assert_eq!(env.get("/api/v1/me", &alice()).await.0, 200);

    // 59 s later nothing has happened.
    for _ in 0..59 {
        env.clock.advance(Duration::from_secs(1));
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(presence.lock().unwrap().is_empty(), "too early");
    // Past 60 s alice's session is lost.
    let mut moved = false;
    for _ in 0..100 {
        env.clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
        if !presence.lock().unwrap().is_empty() && !conversation.lock().unwrap().is_empty() {
            moved = true;
            break;
        }
    }
    assert!(moved, "the sweep did not act");
    let (verb, payload) = conversation.lock().unwrap()[0].clone();
    assert_eq!(verb, "withdraw-offer");
    assert_eq!(
        v1::WithdrawOffer::decode(payload).unwrap(),
        v1::WithdrawOffer {
            conversation_id: "c1".into(),
            offer_id: "o1".into(),
            reason: v1::WithdrawReason::SessionLost as i32
        }
    );
    let seen = presence.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        1,
        "only alice: bob has a socket, carol is logged out, dave is in RONA (B2.3)"
    );
    assert_eq!(seen[0].0, "change-state");
    assert_eq!(
        v1::ChangeAgentState::decode(seen[0].1.clone()).unwrap(),
        v1::ChangeAgentState {
            agent_id: "alice".into(),
            state: v1::PresenceState::Idle as i32,
            idle_reason: "disconnected".into(),
            by: Some(v1::Actor { kind: v1::ActorKind::System as i32, id: String::new() }),
        }
    );
    // Once the presence service has recorded it, the sweep leaves alice alone.
    env.agent_event(
        "alice",
        v1::AgentStateChanged {
            agent_id: "alice".into(),
            state: v1::PresenceState::Idle as i32,
            idle_reason: "disconnected".into(),
            ..Default::default()
        },
    )
    .await;
    env.conv(
        "c1",
        v1::OfferWithdrawn {
            conversation_id: "c1".into(),
            offer_id: "o1".into(),
            agent_id: "alice".into(),
            reason: v1::WithdrawReason::SessionLost as i32,
            at: ts(T0),
        },
    )
    .await;
    env.applied("conversation-c1", 4).await;
    for _ in 0..150 {
        env.clock.advance(Duration::from_secs(1));
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(presence.lock().unwrap().len(), 1);
    assert_eq!(conversation.lock().unwrap().len(), 1);
    // Bob's socket closing starts his clock.
    drop(bob_ws.0);
    eventually("bob's socket is gone", || async { env.shared.hub.is_empty() }).await;
    let mut bob_moved = false;
    for _ in 0..100 {
        env.clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
        if presence.lock().unwrap().len() == 2 {
            bob_moved = true;
            break;
        }
    }
    assert!(bob_moved);
    let change = v1::ChangeAgentState::decode(presence.lock().unwrap()[1].1.clone()).unwrap();
    assert_eq!(change.agent_id, "bob");
}

#[tokio::test]
async fn b1_5_a_websocket_that_answers_no_pings_is_closed_so_its_session_can_be_lost() {
    let env = spawn_gateway_with(|c| c.session_timeout = Duration::from_secs(4)).await;
    // Never polled: tungstenite answers pings only while reading.
    let _silent = env.ws(&format!("access_token={}", alice())).await;
    eventually("the client is registered", || async { !env.shared.hub.is_empty() }).await;
    let closed_within = Duration::from_secs(5);
    let started = std::time::Instant::now();
    eventually("the silent client is dropped", || async { env.shared.hub.is_empty() }).await;
    assert!(started.elapsed() < closed_within, "took {:?}", started.elapsed());
}

// ---- OpenAPI, health, desktop -----------------------------------------------------------

#[tokio::test]
async fn b8_openapi_3_1_lists_every_path_of_the_contract() {
    let env = spawn_gateway().await;
    let (s, doc, ct) = env.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, 200);
    assert!(ct.starts_with("application/json"), "{ct}");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."), "{}", doc["openapi"]);
    let contract = include_str!("../../../../shared/spec/GATEWAY-API.md");
    let mut wanted = Vec::new();
    for line in contract.lines() {
        for method in ["GET", "PUT", "POST", "DELETE"] {
            if let Some(rest) = line.strip_prefix(&format!("| `{method} ")) {
                let path = rest.split(['`', '?']).next().unwrap().trim().to_owned();
                wanted.push((method.to_lowercase(), path));
            }
        }
    }
    wanted.push(("get".into(), "/api/v1/ws".into()));
    wanted.push(("get".into(), "/api/v1/openapi.json".into()));
    assert!(wanted.len() >= 25, "{wanted:?}");
    for (method, path) in wanted {
        if path == "/api/v1/openapi.json" {
            continue; // the document itself
        }
        assert!(
            doc["paths"][&path][&method].is_object(),
            "{method} {path} is missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

#[tokio::test]
async fn b9_health_metrics_and_the_agent_desktop_are_served() {
    let env = spawn_gateway().await;
    for (path, want) in [("/healthz", "ok"), ("/readyz", "ready"), ("/metrics", "")] {
        let response = env.http.get(env.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.text().await.unwrap().contains(want), "{path}");
    }
    assert_eq!(env.call("GET", "/api/v1/openapi.json", None, None).await.0, 200);
    let metrics = env.http.get(env.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("sb_gateway_requests_total{method=\"GET\",status=\"200\"}"),
        "{metrics}"
    );
    let response = env.http.get(env.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = response.text().await.unwrap();
    assert!(
        page.contains("/api/v1/ws") && page.contains("\"/api/v1\" + path"),
        "the desktop talks to the public API"
    );
    assert!(page.contains("4096"), "the send box counts to the limit");
}

// ---- property run over the OpenAPI document ------------------------------------------

/// A small deterministic generator (xorshift), seeded and printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

/// Schemathesis-style: every operation of the OpenAPI document, called with
/// odd ids, bodies, queries and tokens, never answers 5xx (services that
/// refuse everything stand in for the domain).
#[tokio::test]
async fn b8_no_operation_of_the_openapi_document_answers_5xx_to_odd_input() {
    let env = spawn_gateway().await;
    for service in Service::ALL {
        fake_service(&env, service, |_, _| refusal("refused", v1::ErrorKind::Conflict)).await;
    }
    env.start_conversation("c1").await;
    env.offer("c1", "o1", "alice").await;
    env.applied("conversation-c1", 3).await;
    let seed = std::env::var("GATEWAY_PROPERTY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe_u64);
    println!("GATEWAY_PROPERTY_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let (_, doc, _) = env.call("GET", "/api/v1/openapi.json", None, None).await;
    let long = "x".repeat(300);
    let ids = [
        "c1",
        "alice",
        "sales",
        "",
        "a b",
        "..",
        "%2F",
        "ü",
        "-1",
        "18446744073709551616",
        long.as_str(),
        "resolved",
    ];
    let bodies: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("{}".into()),
        Some("null".into()),
        Some("[]".into()),
        Some("{\"name\": 5}".into()),
        Some("{\"name\": \"Sales\", \"offerTimeoutSecs\": -1}".into()),
        Some("{\"name\": \"Sales\", \"offerTimeoutSecs\": 99999999999}".into()),
        Some("{\"state\": \"Idle\", \"reason\": \"a b\"}".into()),
        Some("{\"text\": \"\\u0000\"}".into()),
        Some("{\"queueId\": \"sales\", \"agentId\": \"bob\"}".into()),
        Some("{\"agentId\": \"bob\"}".into()),
        Some("{\"reason\": \"resolved\", \"note\": null}".into()),
        Some("{\"label\": \"ok\"}".into()),
        Some("\u{fffd}\u{0}garbage".into()),
        Some(format!("{{\"text\": \"{}\"}}", "y".repeat(5000))),
    ];
    let queries = [
        "",
        "?search=",
        "?search=%FF",
        "?available=true",
        "?available=1",
        "?state=ended",
        "?state=",
        "?since=1",
    ];
    let tokens = [Some(sup()), Some(alice()), Some(bob()), Some("x.y.z".to_owned()), None];
    let mut calls = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        if path == "/api/v1/ws" {
            continue;
        }
        for method in operations.as_object().unwrap().keys() {
            for _ in 0..60 {
                let mut concrete = String::new();
                for part in path.split('/') {
                    if part.starts_with('{') {
                        let id = rng.pick(&ids[..]);
                        concrete.push('/');
                        concrete.push_str(&id.replace(' ', "%20"));
                    } else if !part.is_empty() {
                        concrete.push('/');
                        concrete.push_str(part);
                    }
                }
                let query = *rng.pick(&queries);
                concrete.push_str(query);
                let mut request = env.http.request(
                    reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    env.url(&concrete),
                );
                if let Some(t) = rng.pick(&tokens) {
                    request = request.bearer_auth(t);
                }
                if let Some(body) = rng.pick(&bodies) {
                    request = request.header("content-type", "application/json").body(body.clone());
                }
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let text = response.text().await.unwrap();
                calls += 1;
                assert!(
                    status < 500,
                    "{} {concrete} answered {status}: {text} (seed {seed})",
                    method.to_uppercase()
                );
            }
        }
    }
    assert!(calls >= 24 * 60, "{calls}");
}
