//! Shared by the forwarding tests and `benches/forwarding.rs` (through `#[path]`):
//! a small hand-written cluster that exercises every forwarding case, a synthetic cluster of
//! any size for the benchmark, and a scratch network namespace that deletes itself on drop.
//!
//! Addresses are DESIGN.md's documentation ranges only; the namespace has no links besides
//! its own loopback, so nothing can leave it.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use herald_speaker::forwarding::{DEFAULT_MASQUERADE_MARK, Ruleset};
use herald_speaker::model::{
    AddressOrigin, Endpoint, EndpointConditions, EndpointPort, ExternalAddress, Model, Node, Pool,
    Protocol, Service, ServiceKey, ServicePort, TrafficPolicy,
};
use herald_speaker::planner::plan;

/// The node the fixtures are planned for.
pub const THIS_NODE: &str = "n1";

fn ip(text: &str) -> IpAddr {
    text.parse().expect("fixture address")
}

fn node(name: &str) -> Node {
    Node {
        name: name.into(),
        labels: Default::default(),
        addresses: vec![],
        excluded: false,
    }
}

fn pool(name: &str, ranges: &[&str], allow_external_ips: bool) -> Pool {
    Pool {
        name: name.into(),
        labels: Default::default(),
        ranges: ranges
            .iter()
            .map(|r| r.parse().expect("fixture range"))
            .collect(),
        allow_external_ips,
    }
}

fn port(name: &str, protocol: Protocol, number: u16) -> ServicePort {
    ServicePort {
        name: name.into(),
        protocol,
        port: number,
    }
}

fn endpoint(address: &str, node: &str, ports: &[(&str, Protocol, u16)]) -> Endpoint {
    Endpoint {
        addresses: vec![ip(address)],
        node: Some(node.into()),
        conditions: EndpointConditions::READY,
        ports: ports
            .iter()
            .map(|(name, protocol, port)| EndpointPort {
                name: (*name).into(),
                protocol: *protocol,
                port: *port,
            })
            .collect(),
    }
}

fn ingress(address: &str) -> ExternalAddress {
    ExternalAddress {
        ip: ip(address),
        origin: AddressOrigin::LoadBalancerIngress,
    }
}

fn service(
    name: &str,
    addresses: Vec<ExternalAddress>,
    policy: TrafficPolicy,
    ports: Vec<ServicePort>,
    endpoints: Vec<Endpoint>,
) -> Service {
    Service {
        key: ServiceKey::new("default", name),
        addresses,
        ports,
        traffic_policy: policy,
        pool: None,
        endpoints,
    }
}

fn base_model() -> Model {
    Model {
        nodes: ["n1", "n2"]
            .iter()
            .map(|n| (n.to_string(), node(n)))
            .collect(),
        pools: [
            pool("l2", &["192.0.2.128/25", "2001:db8:1::100/120"], true),
            pool("bgp", &["203.0.113.0/24", "2001:db8:100::/120"], false),
        ]
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect(),
        ..Default::default()
    }
}

fn insert(model: &mut Model, service: Service) {
    model.services.insert(service.key.clone(), service);
}

/// Every forwarding case in one cluster, planned for node `n1`:
/// `web` Cluster/TCP over three endpoints (one terminating, left out; one remote, masqueraded);
/// `web-local` Local with an unnamed port (only n1's endpoint); `dns` dual-stack UDP+TCP;
/// `diameter` SCTP on a remote node; `empty` Cluster without endpoints (rejected);
/// `ext` two `spec.externalIPs`, one inside an allowing pool and one not.
pub fn mixed_model() -> Model {
    let http = [("http", Protocol::Tcp, 8080)];
    let mut model = base_model();
    let mut terminating = endpoint("198.18.2.6", "n2", &http);
    terminating.conditions = EndpointConditions {
        ready: false,
        serving: true,
        terminating: true,
    };
    insert(
        &mut model,
        service(
            "web",
            vec![ingress("203.0.113.10")],
            TrafficPolicy::Cluster,
            vec![port("http", Protocol::Tcp, 80)],
            vec![
                endpoint("198.18.1.5", "n1", &http),
                endpoint("198.18.2.5", "n2", &http),
                terminating,
            ],
        ),
    );
    let unnamed = [("", Protocol::Tcp, 8443)];
    insert(
        &mut model,
        service(
            "web-local",
            vec![ingress("203.0.113.11")],
            TrafficPolicy::Local,
            vec![port("", Protocol::Tcp, 443)],
            vec![
                endpoint("198.18.1.7", "n1", &unnamed),
                endpoint("198.18.2.7", "n2", &unnamed),
            ],
        ),
    );
    let dns = [
        ("dns", Protocol::Udp, 5353),
        ("dns-tcp", Protocol::Tcp, 5353),
    ];
    insert(
        &mut model,
        service(
            "dns",
            vec![ingress("203.0.113.53"), ingress("2001:db8:100::53")],
            TrafficPolicy::Cluster,
            vec![
                port("dns", Protocol::Udp, 53),
                port("dns-tcp", Protocol::Tcp, 53),
            ],
            vec![
                endpoint("198.18.1.53", "n1", &dns),
                endpoint("2001:db8:244:1::53", "n1", &dns),
                endpoint("2001:db8:244:2::53", "n2", &dns),
            ],
        ),
    );
    insert(
        &mut model,
        service(
            "diameter",
            vec![ingress("203.0.113.20")],
            TrafficPolicy::Cluster,
            vec![port("diameter", Protocol::Sctp, 3868)],
            vec![endpoint(
                "198.18.2.20",
                "n2",
                &[("diameter", Protocol::Sctp, 3868)],
            )],
        ),
    );
    insert(
        &mut model,
        service(
            "empty",
            vec![ingress("203.0.113.30")],
            TrafficPolicy::Cluster,
            vec![port("http", Protocol::Tcp, 80)],
            vec![],
        ),
    );
    insert(
        &mut model,
        service(
            "ext",
            vec![
                ExternalAddress {
                    ip: ip("192.0.2.200"),
                    origin: AddressOrigin::ExternalIp,
                },
                ExternalAddress {
                    ip: ip("203.0.113.99"),
                    origin: AddressOrigin::ExternalIp,
                },
            ],
            TrafficPolicy::Cluster,
            vec![port("http", Protocol::Tcp, 8080)],
            vec![endpoint("198.18.1.8", "n1", &http)],
        ),
    );
    model
}

/// [`mixed_model`] after a round of changes: `web` scales up by one remote endpoint,
/// `diameter` is deleted, `empty` gets its first endpoint, and `new` appears.
pub fn mixed_model_updated() -> Model {
    let http = [("http", Protocol::Tcp, 8080)];
    let mut model = mixed_model();
    if let Some(web) = model.services.get_mut(&ServiceKey::new("default", "web")) {
        web.endpoints.push(endpoint("198.18.2.9", "n2", &http));
    }
    model
        .services
        .remove(&ServiceKey::new("default", "diameter"));
    if let Some(empty) = model.services.get_mut(&ServiceKey::new("default", "empty")) {
        empty.endpoints.push(endpoint("198.18.2.30", "n2", &http));
    }
    insert(
        &mut model,
        service(
            "new",
            vec![ingress("203.0.113.40")],
            TrafficPolicy::Cluster,
            vec![port("http", Protocol::Tcp, 80)],
            vec![endpoint("198.18.1.40", "n1", &http)],
        ),
    );
    model
}

/// The ruleset node `n1` applies for `model`.
pub fn ruleset_for(model: &Model) -> Ruleset {
    let live: BTreeSet<String> = ["n1", "n2"].iter().map(|n| n.to_string()).collect();
    let node_plan = plan(model, THIS_NODE, &live);
    Ruleset::from_plan(&node_plan.forwarding, DEFAULT_MASQUERADE_MARK)
}

/// A cluster of `services` single-port TCP Services with `endpoints` ready endpoints each,
/// spread over four nodes. External addresses are 203.0.113.0/24 × ports 1000…,
/// endpoints 198.18.0.0/16 × ports 8000…, so any count up to ~16M stays unique.
pub fn synthetic_model(services: usize, endpoints: usize) -> Model {
    let mut model = base_model();
    for n in ["n3", "n4"] {
        model.nodes.insert(n.to_string(), node(n));
    }
    let nodes = ["n1", "n2", "n3", "n4"];
    for i in 0..services {
        let vip = Ipv4Addr::new(203, 0, 113, (i % 256) as u8);
        let vip_port = 1000 + (i / 256) as u16;
        let backends = (0..endpoints)
            .map(|k| {
                let e = i * endpoints + k;
                let address = Ipv4Addr::new(198, 18, ((e / 256) % 256) as u8, (e % 256) as u8);
                let target = 8000 + (e / 65536) as u16;
                Endpoint {
                    addresses: vec![IpAddr::V4(address)],
                    node: Some(nodes[e % nodes.len()].to_string()),
                    conditions: EndpointConditions::READY,
                    ports: vec![EndpointPort {
                        name: "http".into(),
                        protocol: Protocol::Tcp,
                        port: target,
                    }],
                }
            })
            .collect();
        insert(
            &mut model,
            service(
                &format!("svc-{i}"),
                vec![ExternalAddress {
                    ip: IpAddr::V4(vip),
                    origin: AddressOrigin::LoadBalancerIngress,
                }],
                TrafficPolicy::Cluster,
                vec![port("http", Protocol::Tcp, vip_port)],
                backends,
            ),
        );
    }
    model
}

/// Replaces the last endpoint of Service `svc-{index}` in a synthetic model (one Service's
/// update: one endpoint chain out, one in, its service chain refilled).
pub fn replace_one_endpoint(model: &mut Model, index: usize) {
    if let Some(service) = model
        .services
        .get_mut(&ServiceKey::new("default", format!("svc-{index}")))
        && let Some(last) = service.endpoints.last_mut()
    {
        last.addresses = vec![ip("198.19.255.254")];
    }
}

/// True when this machine can run nft in a scratch namespace: root, `ip` and `nft`.
pub fn nft_available() -> bool {
    let ok = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"));
    root && ok("ip", &["-V"]) && ok("nft", &["--version"])
}

static NEXT_NAMESPACE: AtomicUsize = AtomicUsize::new(0);

/// A network namespace made for one test, deleted (with everything in it) on drop.
pub struct ScratchNetns {
    pub name: String,
}

impl ScratchNetns {
    pub fn create(purpose: &str) -> Self {
        let name = format!(
            "hfwd-{purpose}-{}-{}",
            std::process::id(),
            NEXT_NAMESPACE.fetch_add(1, Ordering::Relaxed)
        );
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip netns add");
        assert!(status.success(), "ip netns add {name} failed");
        Self { name }
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .expect("run ip netns exec")
    }

    /// Runs nft inside the namespace, with `stdin` as its input.
    pub fn nft_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nft");
        if let Some(mut pipe) = child.stdin.take() {
            let text = stdin.to_owned();
            std::thread::spawn(move || {
                let _ = pipe.write_all(text.as_bytes());
            });
        }
        child.wait_with_output().expect("wait for nft")
    }
}

impl Drop for ScratchNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Environment variable that turns a test or bench binary into a traffic helper inside a
/// namespace; see [`run_traffic_helper`].
pub const TRAFFIC_HELPER_ENV: &str = "HERALD_FORWARDING_TRAFFIC_HELPER";

/// Runs the helper role named by [`TRAFFIC_HELPER_ENV`], if any; returns whether it did.
///
/// Roles: `server:<listen>` answers `peer\n` with `peer=<client ip>` and `send <n>\n` with n
/// bytes, for at most 600 s; `client:<target>` makes one `peer` request and prints `OK <reply>`
/// or `ERR <kind>`; `latency:<target>:<count>` prints `LAT <µs> …` for `count` sequential
/// connect + request + reply round trips; `throughput:<target>:<bytes>` prints `TPUT <seconds>`
/// for receiving `bytes` over one connection.
pub fn run_traffic_helper() -> bool {
    let Ok(role) = std::env::var(TRAFFIC_HELPER_ENV) else {
        return false;
    };
    let mut parts = role.splitn(2, ':');
    let (kind, rest) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match kind {
        "server" => traffic::serve(rest),
        "client" => match traffic::request(rest, "peer") {
            Ok(reply) => println!("OK {}", reply.trim()),
            Err(error) => println!("ERR {:?}", error.kind()),
        },
        "latency" => {
            let (target, count) = rest.rsplit_once(':').unwrap_or((rest, "1"));
            let count: usize = count.parse().unwrap_or(1).min(100_000);
            let mut samples = Vec::with_capacity(count);
            for _ in 0..count {
                let started = std::time::Instant::now();
                if traffic::request(target, "peer").is_ok() {
                    samples.push(started.elapsed().as_micros().to_string());
                }
            }
            println!("LAT {}", samples.join(" "));
        }
        "throughput" => {
            let (target, bytes) = rest.rsplit_once(':').unwrap_or((rest, "0"));
            let started = std::time::Instant::now();
            match traffic::request(target, &format!("send {bytes}")) {
                Ok(reply) if reply.len().to_string() == bytes => {
                    println!("TPUT {}", started.elapsed().as_secs_f64())
                }
                Ok(reply) => println!("ERR short read of {} bytes", reply.len()),
                Err(error) => println!("ERR {:?}", error.kind()),
            }
        }
        _ => println!("ERR unknown role {role}"),
    }
    true
}

mod traffic {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    /// At most this many bytes per `send` request (1 GiB).
    const MAX_SEND: u64 = 1 << 30;

    pub fn serve(listen: &str) {
        let listener = TcpListener::bind(listen).expect("bind traffic server");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        println!("READY");
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, peer)) => {
                    std::thread::spawn(move || answer(stream, peer));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    fn answer(stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.set_nodelay(true);
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let mut writer = &stream;
        let line = line.trim();
        if line == "peer" {
            let _ = writeln!(writer, "peer={}", peer.ip());
        } else if let Some(count) = line.strip_prefix("send ") {
            let mut left = count.parse::<u64>().unwrap_or(0).min(MAX_SEND);
            let chunk = vec![b'x'; 64 * 1024];
            while left > 0 {
                let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
                if writer.write_all(&chunk[..n]).is_err() {
                    return;
                }
                left -= n as u64;
            }
        }
    }

    /// One connection: send `command`, read the whole reply (2 s connect, 30 s read bound).
    pub fn request(target: &str, command: &str) -> std::io::Result<String> {
        let address: SocketAddr = target
            .parse()
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        writeln!(stream, "{command}")?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply)
    }
}

/// Three namespaces: client (198.51.100.100) -> node (198.51.100.1 | 198.18.1.1, forwarding
/// on, Herald's table goes here) -> pod (198.18.1.5, runs the traffic server on :8080).
/// Routes exist only between these ranges; 203.0.113.0/24 (Service addresses) is routed from
/// the client to the node, and from the node towards the pod link. Dropping it kills the
/// server and deletes all three namespaces (and with them the veth pairs).
pub struct TrafficLab {
    pub client: ScratchNetns,
    pub node: ScratchNetns,
    pub pod: ScratchNetns,
    server: Option<std::process::Child>,
    helper_args: Vec<String>,
}

pub const LAB_POD_ADDRESS: &str = "198.18.1.5";
pub const LAB_POD_PORT: u16 = 8080;
pub const LAB_CLIENT_ADDRESS: &str = "198.51.100.100";
pub const LAB_NODE_POD_SIDE: &str = "198.18.1.1";

impl TrafficLab {
    /// `helper_args`: the arguments that make this executable run [`run_traffic_helper`]
    /// (none for a bench, `--ignored --exact <helper test>` for a test binary).
    pub fn create(helper_args: &[&str]) -> Result<Self, String> {
        let mut lab = Self {
            client: ScratchNetns::create("client"),
            node: ScratchNetns::create("node"),
            pod: ScratchNetns::create("pod"),
            server: None,
            helper_args: helper_args.iter().map(|s| s.to_string()).collect(),
        };
        let tag = std::process::id() % 100_000;
        let (client_if, node_client_if) = (format!("hfc{tag}"), format!("hfnc{tag}"));
        let (node_pod_if, pod_if) = (format!("hfnp{tag}"), format!("hfp{tag}"));
        let host = |args: &[&str]| -> Result<(), String> {
            let output = Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| e.to_string())?;
            if output.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {args:?}: {}",
                    String::from_utf8_lossy(&output.stderr)
                ))
            }
        };
        host(&[
            "link",
            "add",
            &client_if,
            "netns",
            &lab.client.name,
            "type",
            "veth",
            "peer",
            "name",
            &node_client_if,
            "netns",
            &lab.node.name,
        ])?;
        host(&[
            "link",
            "add",
            &node_pod_if,
            "netns",
            &lab.node.name,
            "type",
            "veth",
            "peer",
            "name",
            &pod_if,
            "netns",
            &lab.pod.name,
        ])?;
        let node_client = format!("{LAB_NODE_POD_SIDE}/24");
        let pod = format!("{LAB_POD_ADDRESS}/24");
        let client = format!("{LAB_CLIENT_ADDRESS}/24");
        for (ns, link, address) in [
            (&lab.client, &client_if, client.as_str()),
            (&lab.node, &node_client_if, "198.51.100.1/24"),
            (&lab.node, &node_pod_if, node_client.as_str()),
            (&lab.pod, &pod_if, pod.as_str()),
        ] {
            ns.run(&["ip", "addr", "add", address, "dev", link])?;
            ns.run(&["ip", "link", "set", link, "up"])?;
            ns.run(&["ip", "link", "set", "lo", "up"])?;
        }
        lab.client.run(&[
            "ip",
            "route",
            "add",
            "203.0.113.0/24",
            "via",
            "198.51.100.1",
        ])?;
        lab.client
            .run(&["ip", "route", "add", "198.18.1.0/24", "via", "198.51.100.1"])?;
        lab.pod.run(&[
            "ip",
            "route",
            "add",
            "198.51.100.0/24",
            "via",
            LAB_NODE_POD_SIDE,
        ])?;
        lab.node
            .run(&["ip", "route", "add", "203.0.113.0/24", "dev", &node_pod_if])?;
        lab.node.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        lab.start_server()?;
        Ok(lab)
    }

    fn helper(&self, ns: &ScratchNetns, role: &str) -> Command {
        let exe = std::env::current_exe().expect("own executable path");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &ns.name])
            .arg(exe)
            .args(&self.helper_args)
            .env(TRAFFIC_HELPER_ENV, role);
        command
    }

    fn start_server(&mut self) -> Result<(), String> {
        use std::io::{BufRead, BufReader};
        let mut child = self
            .helper(&self.pod, &format!("server:0.0.0.0:{LAB_POD_PORT}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start traffic server: {e}"))?;
        let stdout = child.stdout.take();
        self.server = Some(child);
        let ready = stdout.is_some_and(|out| {
            BufReader::new(out)
                .lines()
                .take(50)
                .map_while(Result::ok)
                .any(|l| l.contains("READY"))
        });
        if ready {
            Ok(())
        } else {
            Err("traffic server did not start".into())
        }
    }

    /// Runs a client role in the client namespace and returns its result line.
    pub fn client(&self, role: &str) -> String {
        let output = self.helper(&self.client, role).output();
        let Ok(output) = output else {
            return "ERR could not run the client".into();
        };
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find(|l| {
                ["OK ", "ERR ", "LAT", "TPUT "]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .unwrap_or("ERR no answer")
            .to_string()
    }
}

impl Drop for TrafficLab {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

impl ScratchNetns {
    /// Runs a command in the namespace, failing with its stderr.
    pub fn run(&self, args: &[&str]) -> Result<(), String> {
        let output = self.exec(args[0], &args[1..]);
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{args:?} in {}: {}",
                self.name,
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}
