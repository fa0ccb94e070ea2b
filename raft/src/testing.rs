//! Test support for clustered servers (feature `testing`): three real server processes on
//! loopback, started, stopped and killed, and what they say about the cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One node: its id, port and data directory, and the process when running.
pub struct Node {
    /// Its id.
    pub id: u64,
    /// The port its API (and Raft) listens on.
    pub port: u16,
    binary: PathBuf,
    dir: PathBuf,
    peers: String,
    args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    /// A node of `binary` that joins `members` later (its peers name them and it, so it does not
    /// start a cluster of its own); not started.
    pub fn joining(binary: &Path, dir: &Path, id: u64, members: &[Node], args: &[&str]) -> Node {
        let port = free_port();
        let mut peers: Vec<String> = members
            .iter()
            .map(|n| format!("{}=127.0.0.1:{}", n.id, n.port))
            .collect();
        peers.push(format!("{id}=127.0.0.1:{port}"));
        Node {
            id,
            port,
            binary: binary.to_owned(),
            dir: dir.to_owned(),
            peers: peers.join(","),
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        }
    }

    /// `http://127.0.0.1:{port}` (`https` when the node was given `--tls-cert`).
    pub fn url(&self) -> String {
        let scheme = if self.args.iter().any(|a| a == "--tls-cert") {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Starts the process (logs in `node-{id}.log`, data in `node-{id}/`).
    pub fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join(format!("node-{}.log", self.id))).unwrap();
        self.child = Some(
            Command::new(&self.binary)
                .args(["--listen", &format!("127.0.0.1:{}", self.port)])
                .arg("--data-dir")
                .arg(self.dir.join(format!("node-{}", self.id)))
                .args(["--node-id", &self.id.to_string(), "--peers", &self.peers])
                .args(&self.args)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    /// SIGTERM, and waits for a clean exit.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let status = child.wait().unwrap();
            assert!(status.success(), "node {} exited with {status:?}", self.id);
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port free on loopback now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Three nodes of `binary` started on free ports under `dir`.
pub fn three_nodes(binary: &Path, dir: &Path) -> Vec<Node> {
    three_nodes_with(binary, dir, &[])
}

/// [`three_nodes`], each given `args` too.
pub fn three_nodes_with(binary: &Path, dir: &Path, args: &[&str]) -> Vec<Node> {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    three_nodes_advertising(binary, dir, args, &ports, &ports)
}

/// Three nodes of `binary`, each given `args`, listening on `listen` but known to each other (as
/// Raft members) by `advertised`: ports of proxies in front of them, say.
pub fn three_nodes_advertising(
    binary: &Path,
    dir: &Path,
    args: &[&str],
    listen: &[u16],
    advertised: &[u16],
) -> Vec<Node> {
    let peers = advertised
        .iter()
        .enumerate()
        .map(|(i, port)| format!("{}=127.0.0.1:{port}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes: Vec<Node> = listen
        .iter()
        .enumerate()
        .map(|(i, port)| Node {
            id: i as u64 + 1,
            port: *port,
            binary: binary.to_owned(),
            dir: dir.to_owned(),
            peers: peers.clone(),
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        })
        .collect();
    for node in &mut nodes {
        node.start();
    }
    nodes
}

/// Stands in for a node of another build: a proxy in front of one node.
/// - [`newer`](Self::newer): a newer build that writes an optional field this build does not
///   know — it adds such a field to every object of every command in the Raft entries node
///   `writer` sends (but not inside `free_form` maps, whose keys are data).
/// - [`older`](Self::older): a build from before log formats were told — its answers say none
///   (so it reads the first format only) until it is [`upgrade`](Self::upgrade)d.
/// - [`same`](Self::same): this build, unchanged.
///
/// Each counts the Raft entries carrying a batch of commands it passes on; everything else
/// passes unchanged.
pub struct BuildProxy {
    /// The port it listens on.
    pub port: u16,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

/// The field a newer build adds.
pub const ADDED_FIELD: &str = "added_by_a_newer_build";

/// What a proxy makes its node look like.
#[derive(Clone, Copy)]
enum Posing {
    Newer {
        writer: u64,
        free_form: &'static [&'static str],
    },
    Older,
    Same,
}

struct ProxyState {
    target: u16,
    posing: Mutex<Posing>,
    rewritten: Mutex<BTreeMap<String, usize>>,
    batches: Mutex<usize>,
    client: reqwest::Client,
}

impl BuildProxy {
    /// A newer build's node: listens on a free port and forwards to `127.0.0.1:{target}`.
    pub async fn newer(target: u16, writer: u64, free_form: &'static [&'static str]) -> Self {
        Self::start(target, Posing::Newer { writer, free_form }).await
    }

    /// An older build's node: listens on a free port and forwards to `127.0.0.1:{target}`.
    pub async fn older(target: u16) -> Self {
        Self::start(target, Posing::Older).await
    }

    /// This build's node: listens on a free port and forwards to `127.0.0.1:{target}`.
    pub async fn same(target: u16) -> Self {
        Self::start(target, Posing::Same).await
    }

    async fn start(target: u16, posing: Posing) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState {
            target,
            posing: Mutex::new(posing),
            rewritten: Mutex::new(BTreeMap::new()),
            batches: Mutex::new(0),
            client: reqwest::Client::new(),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, state, task }
    }

    /// From now on the node is of this build.
    pub fn upgrade(&self) {
        *self.state.posing.lock().unwrap() = Posing::Same;
    }

    /// How many commands of each kind (variant) it has added the field to.
    pub fn rewritten(&self) -> BTreeMap<String, usize> {
        self.state.rewritten.lock().unwrap().clone()
    }

    /// How many Raft entries carrying a batch of commands (`{"Batch": …}`) it passed on.
    pub fn batches(&self) -> usize {
        *self.state.batches.lock().unwrap()
    }
}

impl Drop for BuildProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Adds [`ADDED_FIELD`] to every object under `value` but inside `free_form` maps.
pub fn add_unknown_fields(value: &mut Value, free_form: &[&str]) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if !free_form.contains(&key.as_str()) {
                    add_unknown_fields(child, free_form);
                }
            }
            map.insert(ADDED_FIELD.into(), serde_json::json!({"any": ["shape", 1]}));
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| add_unknown_fields(item, free_form)),
        _ => {}
    }
}

async fn forward(
    axum::extract::State(proxy): axum::extract::State<Arc<ProxyState>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return axum::http::StatusCode::BAD_REQUEST.into_response();
    };
    let mut bytes = bytes.to_vec();
    if parts.uri.path() == "/raft/append" {
        if let Ok(mut append) = serde_json::from_slice::<Value>(&bytes) {
            let leader = append["vote"]["leader_id"]["node_id"].as_u64();
            for entry in append["entries"].as_array_mut().into_iter().flatten() {
                // `{"Normal": {"Variant": body}}`: the body is the command's own.
                let command = entry
                    .pointer_mut("/payload/Normal")
                    .and_then(Value::as_object_mut)
                    .and_then(|o| o.iter_mut().next());
                let Some((variant, command)) = command else {
                    continue;
                };
                if variant == "Batch" {
                    *proxy.batches.lock().unwrap() += 1;
                }
                let posing = *proxy.posing.lock().unwrap();
                if let Posing::Newer { writer, free_form } = posing {
                    if leader == Some(writer) {
                        add_unknown_fields(command, free_form);
                        // A batch (`{"Batch": {"commands": [{"Variant": body}, …]}}`) counts
                        // each of its commands.
                        let mut rewritten = proxy.rewritten.lock().unwrap();
                        match command["commands"].as_array() {
                            Some(commands) if variant == "Batch" => {
                                for inner in commands.iter().filter_map(Value::as_object) {
                                    for kind in inner.keys().filter(|k| *k != ADDED_FIELD) {
                                        *rewritten.entry(kind.clone()).or_default() += 1;
                                    }
                                }
                            }
                            _ => *rewritten.entry(variant.clone()).or_default() += 1,
                        }
                    }
                }
            }
            bytes = serde_json::to_vec(&append).unwrap();
        }
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut onward = proxy
        .client
        .request(
            parts.method,
            format!("http://127.0.0.1:{}{path}", proxy.target),
        )
        .body(bytes);
    for (name, value) in &parts.headers {
        if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
            onward = onward.header(name, value);
        }
    }
    match onward.send().await {
        Ok(answer) => {
            let status = answer.status();
            let headers = answer.headers().clone();
            let body = answer.bytes().await.unwrap_or_default();
            let mut response = (status, body).into_response();
            for (name, value) in &headers {
                let unsaid = matches!(*proxy.posing.lock().unwrap(), Posing::Older)
                    && name == crate::LOG_FORMAT;
                if name != axum::http::header::CONTENT_LENGTH
                    && name != axum::http::header::TRANSFER_ENCODING
                    && !unsaid
                {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            response
        }
        Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// A client whose requests give up after 8 s.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(8))
        .build()
        .unwrap()
}

/// `/health`'s cluster part, if the node answers.
pub async fn cluster_status(client: &reqwest::Client, url: &str) -> Option<Value> {
    let health: Value = client
        .get(format!("{url}/health"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(health["cluster"].clone())
}

/// Waits until the running nodes agree on one leader; its id.
pub async fn agreed_leader(client: &reqwest::Client, nodes: &[&Node], within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let mut leaders = Vec::new();
        for node in nodes {
            let status = cluster_status(client, &node.url()).await;
            leaders.push(status.and_then(|s| s["leader"].as_u64()));
        }
        if let Some(Some(leader)) = leaders.first() {
            if leaders.iter().all(|l| *l == Some(*leader)) && nodes.iter().any(|n| n.id == *leader)
            {
                return *leader;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no agreed leader within {within:?}: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Until node `id` leads: whichever other node leads is restarted, so another is elected (node 1
/// starts a cluster, so it nearly always leads from the start).
pub async fn leader_made(client: &reqwest::Client, nodes: &mut [Node], id: u64) {
    for _ in 0..20 {
        let all: Vec<&Node> = nodes.iter().collect();
        let leader = agreed_leader(client, &all, Duration::from_secs(20)).await;
        if leader == id {
            return;
        }
        let index = nodes.iter().position(|n| n.id == leader).unwrap();
        nodes[index].terminate();
        let others: Vec<&Node> = nodes.iter().filter(|n| n.id != leader).collect();
        agreed_leader(client, &others, Duration::from_secs(20)).await;
        nodes[index].start();
    }
    panic!("node {id} was never elected in 20 elections");
}

/// Waits until `/health`'s cluster part at `url` satisfies `holds`; that status.
pub async fn status_when(
    client: &reqwest::Client,
    url: &str,
    holds: impl Fn(&Value) -> bool,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let status = cluster_status(client, url).await;
        if let Some(status) = status.as_ref().filter(|s| holds(s)) {
            return status.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{url} never reached the expected state: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("`ip` (iproute2) is installed");
    assert!(
        status.success(),
        "ip {} failed (this test needs root)",
        args.join(" ")
    );
}

/// Three nodes in network namespaces of their own, joined by veth pairs to a bridge: the
/// namespaces, links and processes of one test, all removed on drop. Needs root.
pub struct Net {
    tag: String,
    subnet: String,
    port: u16,
    children: Vec<Option<Child>>,
}

impl Net {
    /// Node `i`'s namespace.
    pub fn namespace(&self, i: usize) -> String {
        format!("{}-{i}", self.tag)
    }

    /// Node `i`'s address.
    pub fn addr(&self, i: usize) -> String {
        format!("{}.{i}", self.subnet)
    }

    /// Node `i`'s base URL.
    pub fn url(&self, i: usize) -> String {
        format!("http://{}:{}", self.addr(i), self.port)
    }

    /// The namespaces and links for three nodes listening on `port`; `salt` keeps two tests of
    /// one process apart.
    pub fn new(port: u16, salt: u32) -> Net {
        let id = (std::process::id() + salt) % 10_000;
        let net = Net {
            tag: format!("mk{id}"),
            subnet: format!("10.{}.{}", 200 + salt % 50, id % 250),
            port,
            children: Vec::new(),
        };
        let bridge = format!("{}br", net.tag);
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}.254/24", net.subnet),
            "dev",
            &bridge,
        ]);
        ip(&["link", "set", &bridge, "up"]);
        for i in 1..=3 {
            let ns = net.namespace(i);
            let (host_end, node_end) = (format!("{}h{i}", net.tag), format!("{}n{i}", net.tag));
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", &host_end, "type", "veth", "peer", "name", &node_end,
            ]);
            ip(&["link", "set", &node_end, "netns", &ns]);
            ip(&["link", "set", &host_end, "master", &bridge]);
            ip(&["link", "set", &host_end, "up"]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
            ip(&[
                "netns",
                "exec",
                &ns,
                "ip",
                "addr",
                "add",
                &format!("{}/24", net.addr(i)),
                "dev",
                &node_end,
            ]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", &node_end, "up"]);
        }
        net
    }

    /// Starts `binary` in each namespace, data under `dir`, with `args` too.
    pub fn start(&mut self, binary: &Path, dir: &Path, args: &[&str]) {
        let port = self.port;
        let peers = (1..=3)
            .map(|i| format!("{i}={}:{port}", self.addr(i)))
            .collect::<Vec<_>>()
            .join(",");
        for i in 1..=3 {
            let log = std::fs::File::create(dir.join(format!("node-{i}.log"))).unwrap();
            let child = Command::new("ip")
                .args(["netns", "exec", &self.namespace(i)])
                .arg(binary)
                .args(["--listen", &format!("{}:{port}", self.addr(i))])
                .arg("--data-dir")
                .arg(dir.join(format!("node-{i}")))
                .args(["--node-id", &i.to_string(), "--peers", &peers])
                .args(args)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            self.children.push(Some(child));
        }
    }

    /// Cuts (or, with `heal`, restores) every path between node `i` and the other nodes.
    pub fn isolate(&self, i: usize, heal: bool) {
        let verb = if heal { "del" } else { "add" };
        for j in (1..=3).filter(|j| *j != i) {
            // Both directions: i drops what it sends to j, and j what it sends to i.
            for (from, to) in [(i, j), (j, i)] {
                let to = format!("{}/32", self.addr(to));
                ip(&[
                    "netns",
                    "exec",
                    &self.namespace(from),
                    "ip",
                    "route",
                    verb,
                    "blackhole",
                    &to,
                ]);
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for i in 1..=3 {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.namespace(i)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}br", self.tag)])
            .status();
    }
}

/// Waits until `nodes` agree on a leader among them; its number.
pub async fn leader_among(client: &reqwest::Client, net: &Net, nodes: &[usize]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut seen = Vec::new();
        for i in nodes {
            seen.push(
                cluster_status(client, &net.url(*i))
                    .await
                    .and_then(|s| s["leader"].as_u64()),
            );
        }
        if let Some(Some(leader)) = seen.first() {
            let leader = *leader as usize;
            if seen.iter().all(|l| *l == Some(leader as u64)) && nodes.contains(&leader) {
                return leader;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader among {nodes:?}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
